"""The paper's ablations: the variants change one thing each, and the study runs, resumes and summarises."""

import json
import os

import numpy as np
import pytest

from alexnet import ablations, build_model, train
from alexnet.configs import MINI, PAPER, TORCHVISION
from alexnet.dataspec import describe_data, make_transforms
from alexnet.runs import load_run
from alexnet.variants import VARIANTS, augments, variant_config


def _shapes(cfg):
    """Every stage's output shape (one tower's, and the tower count) for a batch of one."""
    model = build_model(cfg, num_classes=10)
    x = np.zeros((1, cfg.in_channels, cfg.input_size, cfg.input_size), np.float32)
    return {name: model.features(x, name).shape for name in ("pool1", "pool2", "conv3", "conv4", "pool5")}, model


def test_no_overlap_keeps_every_map_size_and_weight():
    base, base_model = _shapes(MINI)
    new_cfg = variant_config(MINI, "no-overlap")
    assert new_cfg.pool == {"kernel_size": 2, "stride": 2}
    new, new_model = _shapes(new_cfg)
    assert new == base
    assert new_model.num_parameters() == base_model.num_parameters()
    changed = {s.name: s.padding for s, b in zip(new_cfg.convs, MINI.convs) if s.padding != b.padding}
    # mini's conv1 (28) and conv5 (6) maps are even: one pixel less padding there
    assert changed == {"conv1": 1, "conv5": 0}
    # the paper's pooled maps (55, 27, 13) are odd: 2/2 pooling gives 3/2's sizes as it is, as the paper says
    paper = variant_config(PAPER, "no-overlap")
    assert paper.pool == {"kernel_size": 2, "stride": 2} and paper.convs == PAPER.convs


def test_one_tower_halves_conv1_to_conv4_and_keeps_the_rest():
    for cfg in (MINI, PAPER):
        new = variant_config(cfg, "one-tower")
        assert new.towers == 1 and new.fcs == cfg.fcs
        assert [s.out_channels for s in new.convs] == ([s.out_channels // 2 for s in cfg.convs[:4]]
                                                       + [cfg.convs[4].out_channels])
    base_n = build_model(MINI, num_classes=10).num_parameters()
    new_n = build_model(variant_config(MINI, "one-tower"), num_classes=10).num_parameters()
    assert new_n < base_n and new_n > 0.9 * base_n      # "about the same number of parameters"


def test_no_lrn_and_no_dropout_take_out_exactly_their_layer():
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    base = build_model("mini", num_classes=10, seed=1)
    no_lrn = build_model(variant_config(MINI, "no-lrn"), num_classes=10, seed=1)
    assert "norm1" in base.summary() and "norm1" not in no_lrn.summary() and "norm2" not in no_lrn.summary()
    assert [s.after for s in variant_config(MINI, "no-lrn").convs][:2] == [("relu", "pool")] * 2
    no_drop = build_model(variant_config(MINI, "no-dropout"), num_classes=10, seed=1).train()
    assert np.array_equal(no_drop.forward(x), no_drop.forward(x))       # nothing random in training mode
    base.train()
    assert not np.array_equal(base.forward(x), base.forward(x))        # the baseline draws new masks
    no_drop.eval()
    base.eval()
    assert np.allclose(no_drop.forward(x), base.forward(x), rtol=1e-5, atol=1e-6)   # same weights otherwise


def test_no_augment_trains_on_the_test_transform():
    spec = describe_data("fashion-mnist", None, "mini")
    batch = np.random.default_rng(0).integers(0, 256, (6, 1, 28, 28), dtype=np.uint8)
    plain_train, evalt = make_transforms(spec, 28, augment=False)
    aug_train, _ = make_transforms(spec, 28)
    for seed in range(3):
        assert np.array_equal(plain_train(batch, np.random.default_rng(seed)), evalt(batch))
    flips = [not np.array_equal(aug_train(batch, np.random.default_rng(s)), evalt(batch)) for s in range(3)]
    assert any(flips)
    assert augments("baseline") and not augments("no-augment")


def test_unknown_or_impossible_variants_are_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        variant_config(MINI, "no-relu")
    with pytest.raises(ValueError, match="one-tower variant halves a two-tower net"):
        variant_config(TORCHVISION, "one-tower")
    nothing = PAPER.with_(pool=dict(kernel_size=2, stride=2))
    with pytest.raises(ValueError, match="does not overlap already"):
        variant_config(nothing, "no-overlap")


TINY = ["--train-subset", "256", "--val-size", "64", "--test-subset", "64", "--max-steps", "3", "--log-every", "1",
        "--batch-size", "32"]


def test_train_records_the_variant_and_resume_keeps_it(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main(["--variant", "one-tower", "--out", out, "--no-progress"] + TINY) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["variant"] == "one-tower" and config["args"]["variant"] == "one-tower"
    model, _, _ = load_run(out, "last")
    assert model.config.towers == 1 and model.conv1.tower0.conv.weight.shape[0] == 16
    capsys.readouterr()
    assert train.main(["--variant", "no-lrn", "--out", out, "--resume", "--no-progress"] + TINY) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--variant one-tower (given: no-lrn)" in err[0]


def _study(out, *extra):
    return ablations.main(["--out", out, "--variants", "no-dropout", "--seeds", "2", "--no-progress",
                           "--target-loss", "5"] + TINY + list(extra))


def test_a_study_runs_measures_resumes_and_keeps_its_settings(tmp_path, capsys):
    out = str(tmp_path / "study")
    assert _study(out) == 0
    results = json.load(open(os.path.join(out, "results.json")))
    runs = results["runs"]
    assert sorted((r["variant"], r["seed"]) for r in runs) == [("baseline", 0), ("baseline", 1),
                                                               ("no-dropout", 0), ("no-dropout", 1)]
    for r in runs:
        assert r["steps"] == 3 and 0 <= r["test_top1"] <= 1 and r["test_top1"] <= r["test_top5"]
        assert r["gap"] == pytest.approx(r["train_top1"] - r["test_top1"])
        first = next(s for s, loss in r["step_losses"] if loss <= 5)
        assert r["steps_to_target"] == first == 1
    rows = {row["variant"]: row for row in results["summary"]}
    assert rows["baseline"]["seeds"] == [0, 1] and "verdict" not in rows["baseline"]
    errors = [1 - r["test_top1"] for r in runs if r["variant"] == "baseline"]
    assert rows["baseline"]["top1_error"]["mean"] == pytest.approx(np.mean(errors))
    assert rows["baseline"]["top1_error"]["sd"] == pytest.approx(np.std(errors, ddof=1))
    assert "| no-dropout | 2 |" in open(os.path.join(out, "results.md")).read()

    # a run that was not measured yet (killed after training) is resumed, finishes at once, and measures the same
    again = os.path.join(out, "no-dropout", "seed1")
    before = json.load(open(os.path.join(again, "result.json")))
    os.remove(os.path.join(again, "result.json"))
    stamp = os.path.getmtime(os.path.join(out, "baseline", "seed0", "checkpoints", "last.npz"))
    capsys.readouterr()
    assert _study(out) == 0
    printed = capsys.readouterr().out
    assert "no-dropout, seed 1" in printed and "baseline, seed 0" not in printed   # measured runs are kept
    assert json.load(open(os.path.join(again, "result.json")))["test_top1"] == before["test_top1"]
    assert os.path.getmtime(os.path.join(out, "baseline", "seed0", "checkpoints", "last.npz")) == stamp

    # other shared settings are refused in one line
    assert ablations.main(["--out", out, "--seeds", "2", "--max-steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a study with other settings" in err[0] and "--max-steps 3 (given: 4)" in err[0]


@pytest.mark.parametrize("argv, words", [
    (["--variants", "no-lrn,no-relu"], "unknown no-relu"),
    (["--preset", "torchvision", "--variants", "one-tower"], "--variants one-tower: preset 'torchvision' has 1 tower"),
    (["--out", "FILE"], "is a file; give a folder"),
])
def test_a_study_that_cannot_run_says_why_in_one_line_before_training(tmp_path, capsys, argv, words):
    (tmp_path / "FILE").write_text("")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "s")]
    assert ablations.main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "s").exists()


def _runs(variant, accs):
    return [{"variant": variant, "seed": s, "parameters": 1, "num_classes": 10, "test_top1": a, "test_top5": 1.0, "train_top1": 1.0,
             "gap": 1.0 - a, "steps_to_target": 100 + s, "train_seconds": 10.0} for s, a in enumerate(accs)]


def test_the_summary_pairs_seeds_and_judges_against_two_standard_errors():
    base = _runs("baseline", [0.80, 0.85, 0.90])
    worse = _runs("no-lrn", [0.79, 0.835, 0.89])              # 1, 1.5, 1 points worse: paired, not noise
    better = _runs("no-overlap", [0.82, 0.86, 0.92])
    noisy = _runs("one-tower", [0.83, 0.83, 0.87])           # -3, +2, +3 points
    rows = {r["variant"]: r for r in ablations.summarise(base + worse + better + noisy,
                                                         ["baseline", "no-lrn", "no-overlap", "one-tower"])}
    change = rows["no-lrn"]["top1_error_change"]
    assert change["mean"] == pytest.approx(np.mean([0.01, 0.015, 0.01]))
    assert change["se"] == pytest.approx(np.std([0.01, 0.015, 0.01], ddof=1) / np.sqrt(3))
    assert rows["no-lrn"]["verdict"].startswith("error up")
    assert rows["no-overlap"]["verdict"].startswith("error down")
    assert rows["one-tower"]["verdict"] == "within seed noise"
    # unpaired, the spread between seeds (5 points) would hide no-lrn's consistent 1-point loss
    assert rows["no-lrn"]["top1_error"]["sd"] > 3 * change["mean"]
    assert rows["no-lrn"]["paper"] == {"top1": 1.4, "top5": 1.2, "where": "Section 3.3"}
    one = ablations.summarise(_runs("baseline", [0.8]) + _runs("no-lrn", [0.7]), ["baseline", "no-lrn"])
    assert one[1]["verdict"] == "one seed: no spread"


def test_a_run_that_did_not_learn_is_named_not_averaged_into_noise():
    base = _runs("baseline", [0.80, 0.85, 0.90])
    dead = _runs("no-lrn", [0.10, 0.84, 0.89])             # seed 0 sat at chance: 1 in 10
    row = ablations.summarise(base + dead, ["baseline", "no-lrn"])[1]
    assert row["failed_seeds"] == [0]
    assert row["top1_error"]["mean"] == pytest.approx(1 - np.mean([0.10, 0.84, 0.89]))   # every run counts
    learned = row["top1_error_change_learned"]
    assert learned["n"] == 2 and learned["mean"] == pytest.approx(0.01)
    assert row["verdict"].startswith("did not learn with seed 0; the others: ")
    assert ablations.summarise(base, ["baseline"])[0]["failed_seeds"] == []


def test_every_variant_has_the_papers_claim_or_is_the_baseline():
    from alexnet.variants import PAPER_GAINS

    assert set(PAPER_GAINS) == set(VARIANTS) - {"baseline"}


def test_every_figure_of_the_written_study_is_in_its_stored_results():
    """docs/ablations.md and notebook 12 write the study's figures in prose: each "mean ± spread", and each
    seed-by-seed list of changes, must be one the stored results give (read the other way: none typed by hand)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    stored = repo / "notebooks" / "data" / "ablations-mini-fashion-mnist"
    pairs, per_seed = set(), set()
    for name in ("results.json", "results-lr0.01.json", "results-16epochs.json"):
        found = json.loads((stored / name).read_text())
        for row in found["summary"]:
            for key, stat in row.items():
                spread = stat.get("sd", stat.get("se")) if isinstance(stat, dict) else None
                if spread is None or stat.get("mean") is None:
                    continue
                fmt, scale = ("{:.0f}", 1) if key in ("steps_to_target", "train_seconds") else ("{:.2f}", 100)
                pairs.add((fmt.format(abs(stat["mean"]) * scale), fmt.format(spread * scale)))
        runs = {(r["variant"], r["seed"]): r for r in found["runs"]}
        for (variant, seed), r in runs.items():
            base = runs.get(("baseline", seed))
            if base is not None and variant != "baseline":
                per_seed.add(f"{100 * (base['test_top1'] - r['test_top1']):+.2f}")
                if base["steps_to_target"] and r["steps_to_target"]:
                    per_seed.add(f"{base['steps_to_target'] / r['steps_to_target']:.2f}")
    nb = json.loads((repo / "notebooks" / "12_what_each_idea_buys.ipynb").read_text())
    text = (repo / "docs" / "ablations.md").read_text() + "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = text.replace("−", "-")
    written = re.findall(r"([+-]?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)", text)
    assert len(written) > 50
    assert [w for w in written if (w[0].lstrip("+-"), w[1]) not in pairs] == []
    lists = re.findall(r"(?:seed by seed|seeds) ((?:[+-]?\d+\.\d\d, )+[+-]?\d+\.\d\d)", text)
    assert lists and [v for group in lists for v in group.split(", ") if v not in per_seed] == []
