"""What each of the paper's ideas buys: train a preset's variants over several seeds.

    python -m alexnet.ablations                         # mini on Fashion-MNIST: 6 variants x 3 seeds
    python -m alexnet.ablations --variants baseline,no-lrn --seeds 5 --out runs/lrn-study

Every (variant, seed) is an ordinary training run (``alexnet.train.run`` with
the variant and seed) in ``OUT/<variant>/seed<S>``, all with one schedule: by
default the preset's recipe (``alexnet.configs``) on a fixed 15,000-image
training subset, a quarter of Fashion-MNIST, so that a net this size can
overfit as the paper's did. The variants are in ``alexnet.variants``.

After each run the study measures, from its last checkpoint (the weights at
the end: the study chooses no epoch):
- test top-1 and top-5 error (the run's last evaluation);
- training-set accuracy with dropout and augmentation off, and the gap to the
  test accuracy (overfitting);
- the first logged step where the training loss (as training logs it: with
  dropout and augmentation, the mean over the epoch so far) reaches
  ``--target-loss``.

``OUT/results.json`` holds every run and the summary; ``OUT/results.md`` the
table: mean and standard deviation over seeds, and each variant's change in
error against the baseline, paired by seed (the runs of one seed share their
subset, data order and initial random state), with its standard error.
The study resumes: runs already measured are kept, an interrupted run
continues from its checkpoint; rerun the same command.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from minidl.atomic import atomic_write
from minidl.data import subset_indices

from .cli import OneLineParser, UserError, bounded_int, nonneg_int, positive_float, positive_int, preset_names, run_cli
from .dataspec import make_transforms, open_split
from .evaluate import evaluate
from .report import read_metrics
from .runs import load_run
from .settings import TrainConfig
from .variants import PAPER_GAINS, VARIANTS

# the settings every run of a study shares; a study folder refuses other values
SHARED = ("preset", "data", "epochs", "batch_size", "lr", "lr_step", "train_subset", "val_size", "test_subset",
          "max_steps", "log_every")


def build_parser():
    p = OneLineParser(prog="python -m alexnet.ablations", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--preset", choices=preset_names(), default="mini")
    a("--data", default="fashion-mnist", help="as for alexnet.train (default: fashion-mnist)")
    a("--data-dir", default=None, help="where the Fashion-MNIST .gz files are (searched otherwise)")
    a("--variants", default=",".join(VARIANTS),
      help="comma-separated, from: " + ", ".join(VARIANTS) + " (default: all; baseline is always run)")
    a("--seeds", type=positive_int, default=3, help="seeds 0..N-1 for every variant (default 3)")
    a("--epochs", type=positive_int, default=None, help="default: the preset's (8 for mini)")
    a("--batch-size", type=positive_int, default=None, help="default: the preset's")
    a("--lr", type=positive_float, default=None, help="default: the preset's")
    a("--lr-step", type=positive_int, default=None, help="epochs between divisions by 10 (default: the preset's)")
    a("--train-subset", type=bounded_int(0), default=15000,
      help="train on a fixed random subset of N images per seed (default 15000; 0: all)")
    a("--test-subset", type=positive_int, default=None, help="evaluate on the first N test images only")
    a("--val-size", type=nonneg_int, default=None,
      help="training images held out for validation, as alexnet.train's --val-size (default: the dataset's)")
    a("--max-steps", type=positive_int, default=None, help="stop every run after this many steps (quick studies)")
    a("--log-every", type=positive_int, default=25, help="steps between logged training losses (default 25)")
    a("--target-loss", type=positive_float, default=0.4,
      help="report the first step where the training loss reaches this (default 0.4)")
    a("--out", default=None, help="study folder (default: runs/ablations-<preset>-<data>)")
    a("--backend", choices=["numpy", "cupy"], default="numpy")
    a("--gpus", default=None, help="with --backend cupy: the GPU of each tower (one-tower runs use the first)")
    a("--no-progress", action="store_true", help="no progress bar")
    return p


def _variants(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return ["baseline"] + [v for v in dict.fromkeys(names) if v != "baseline"]


def settings_of(args):
    return {key: getattr(args, key) for key in SHARED}


def check_study_folder(out, settings):
    """Record the study's settings in OUT/study.json, or check them against those recorded."""
    path = os.path.join(out, "study.json")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)["settings"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise UserError(f"{path} is damaged ({exc}); remove the folder or choose another --out") from None
        differ = [f"--{k.replace('_', '-')} {saved.get(k)} (given: {settings[k]})" for k in SHARED
                  if saved.get(k) != settings[k]]
        if differ:
            raise UserError(f"{out} holds a study with other settings: {'; '.join(differ)}. Repeat them to continue "
                            "it (variants and seeds may be added), or choose another --out")
    else:
        with atomic_write(path, "w") as f:
            json.dump({"settings": settings}, f, indent=1)


def _gpus_for(args, variant):
    """--gpus for one variant's run: as many of the study's GPUs as the variant has towers (one-tower: one)."""
    if args.gpus is None:
        return None
    return ",".join(args.gpus.split(",")[:TrainConfig(preset=args.preset, variant=variant).network().towers])


def train_config(args, variant, seed, folder):
    """The settings of one run of the study: the study's, with the variant, seed and folder."""
    return TrainConfig(preset=args.preset, data=args.data, data_dir=args.data_dir, variant=variant, seed=seed,
                       out=folder, log_every=args.log_every, backend=args.backend, no_progress=True,
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_step=args.lr_step,
                       lr_schedule="step" if args.lr_step is not None else None, test_subset=args.test_subset,
                       val_size=args.val_size,
                       max_steps=args.max_steps, train_subset=args.train_subset or None,
                       gpus=_gpus_for(args, variant),
                       resume=os.path.exists(os.path.join(folder, "config.json")))


_RESULT_KEYS = ("variant", "seed", "num_classes", "test_top1", "test_top5", "train_top1", "gap", "steps_to_target",
                "train_seconds")


def _read_result(path, folder):
    """A run's result.json, as measure() wrote it; one line if it was damaged since."""
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        if "num_classes" not in result:       # measured before results recorded it
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
                result["num_classes"] = json.load(f)["data"]["num_classes"]
        missing = [k for k in _RESULT_KEYS if k not in result]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is damaged ({exc}); delete it and the same command measures the finished run "
                        "again") from None
    return result


def measure(folder, target_loss, backend="numpy", gpus=None):
    """What a finished run shows: test error, training accuracy without dropout or augmentation, curves."""
    try:
        records = read_metrics(folder)
    except UserError as exc:
        raise UserError(f"{exc}; remove {folder} and the same command runs it again") from None
    evals = [r for r in records if "test_top1" in r]
    if not evals:
        raise UserError(f"{folder} has no test evaluation; the run did not finish")
    final = evals[-1]
    steps = [(r["step"], r["loss"]) for r in records if r.get("type") == "step"]
    reached = next((s for s, loss in steps if loss <= target_loss), None)
    epochs = [r for r in records if r.get("type") == "epoch"]

    model, config, spec = load_run(folder, "last", backend=backend, gpus=gpus)
    args = config["args"]
    train_set = open_split(spec, "train")
    indices = None
    if args.get("train_subset"):
        indices = subset_indices(train_set.labels, min(args["train_subset"], len(train_set)), args["seed"])
    _, eval_tf = make_transforms(spec, model.input_size)
    on_train = evaluate(model, train_set, eval_tf, batch_size=256, indices=indices)
    return {
        "variant": config.get("variant", "baseline"), "seed": config["seed"], "parameters": model.num_parameters(),
        "num_classes": model.num_classes,
        "steps": final["step"], "test_top1": final["test_top1"], "test_top5": final["test_top5"],
        "test_loss": final["test_loss"], "train_top1": on_train["top1"], "train_loss": on_train["loss"],
        "gap": on_train["top1"] - final["test_top1"], "steps_to_target": reached, "target_loss": target_loss,
        "train_seconds": sum(r.get("time", 0.0) for r in epochs),
        "epochs": [{k: r.get(k) for k in ("epoch", "train_loss", "train_acc", "test_top1", "test_top5", "lr")}
                   for r in epochs],
        "step_losses": steps,
    }


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, sd, len(values)


def paired_change(variant_runs, baseline_runs, key):
    """Mean over seeds of (variant - baseline) for ``key``, its standard error, and the seeds paired."""
    base = {r["seed"]: r[key] for r in baseline_runs if r.get(key) is not None}
    diffs = [r[key] - base[r["seed"]] for r in variant_runs if r.get(key) is not None and r["seed"] in base]
    if not diffs:
        return None, None, 0
    mean = float(np.mean(diffs))
    se = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else None
    return mean, se, len(diffs)


def verdict(change, se):
    """Taking the idea out raised the error (the paper's direction), lowered it, or neither beyond 2 SE."""
    if change is None:
        return "no baseline"
    if se is None:
        return "one seed: no spread"
    if change > 2 * se:
        return "error up without it (as the paper)"
    if change < -2 * se:
        return "error down without it (reversed)"
    return "within seed noise"


def learned(run):
    """Whether a run learned at all: test top-1 at least twice chance (a run that diverged sits at chance)."""
    return run["test_top1"] >= 2.0 / run["num_classes"]


def summarise(runs, variants):
    """One row per variant: means and spreads over seeds, and the change against the baseline.

    Every run counts in the means. A run that did not learn (``learned``) is named in
    ``failed_seeds``, and the verdict says so before any change in error: a diverged run is
    not seed noise. The change among the seeds where both runs learned is given beside it.
    """
    baseline = [r for r in runs if r["variant"] == "baseline"]
    rows = []
    for v in variants:
        mine = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])
        if not mine:
            continue
        row = {"variant": v, "what": VARIANTS[v], "seeds": [r["seed"] for r in mine],
               "parameters": mine[0]["parameters"], "failed_seeds": [r["seed"] for r in mine if not learned(r)]}
        for key, src in (("top1_error", lambda r: 1 - r["test_top1"]), ("top5_error", lambda r: 1 - r["test_top5"]),
                         ("train_top1", lambda r: r["train_top1"]), ("gap", lambda r: r["gap"]),
                         ("steps_to_target", lambda r: r["steps_to_target"]),
                         ("train_seconds", lambda r: r["train_seconds"])):
            mean, sd, n = _mean_sd([src(r) for r in mine])
            row[key] = {"mean": mean, "sd": sd, "n": n}
        if v != "baseline":
            for key in ("top1", "top5"):
                change, se, n = paired_change(mine, baseline, f"test_{key}")
                # error = 1 - accuracy: the error's change is minus the accuracy's
                row[f"{key}_error_change"] = {"mean": None if change is None else -change, "se": se, "n": n}
            gap, gap_se, _ = paired_change(mine, baseline, "gap")
            row["gap_change"] = {"mean": gap, "se": gap_se}
            row["verdict"] = verdict(row["top1_error_change"]["mean"], row["top1_error_change"]["se"])
            if row["failed_seeds"]:
                ok_seeds = {r["seed"] for r in baseline if learned(r)} - set(row["failed_seeds"])
                change, se, n = paired_change([r for r in mine if r["seed"] in ok_seeds],
                                              [r for r in baseline if r["seed"] in ok_seeds], "test_top1")
                row["top1_error_change_learned"] = {"mean": None if change is None else -change, "se": se, "n": n}
                row["verdict"] = (f"did not learn with seed{'s' if len(row['failed_seeds']) > 1 else ''} "
                                  f"{', '.join(map(str, row['failed_seeds']))}; the others: "
                                  + verdict(row["top1_error_change_learned"]["mean"],
                                            row["top1_error_change_learned"]["se"]))
            gains, where = PAPER_GAINS[v]
            row["paper"] = {"top1": gains[0], "top5": gains[1], "where": where} if gains else {"where": where}
        rows.append(row)
    return rows


def _pct(stat, signed=False):
    if stat is None or stat.get("mean") is None:
        return "-"
    text = f"{100 * stat['mean']:+.2f}" if signed else f"{100 * stat['mean']:.2f}"
    spread = stat.get("sd", stat.get("se"))
    return text + (f" ± {100 * spread:.2f}" if spread is not None else "")


def _num(stat):
    if stat is None or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.0f}" + (f" ± {stat['sd']:.0f}" if stat.get("sd") is not None else "")


def markdown_table(rows, target_loss):
    lines = [
        "| variant | seeds | top-1 error % | top-5 error % | change in top-1 error (paired) | paper | "
        f"train acc % (no dropout/aug) | train - test gap | steps to loss {target_loss:g} | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = "-"
        if "paper" in r:
            p = r["paper"]
            paper = f"+{p['top1']} / +{p['top5']}" if "top1" in p else "overfitting"
        learned_only = ""
        if r.get("top1_error_change_learned"):
            learned_only = f" ({_pct(r['top1_error_change_learned'], signed=True)} over the seeds that learned)"
        lines.append(
            f"| {r['variant']} | {len(r['seeds'])} | {_pct(r['top1_error'])} | {_pct(r['top5_error'])} | "
            f"{_pct(r.get('top1_error_change'), signed=True)}{learned_only} | {paper} | {_pct(r['train_top1'])} | "
            f"{_pct(r['gap'])} | {_num(r['steps_to_target'])} | {r.get('verdict', 'reference')} |")
    return "\n".join(lines)


def write_results(out, settings, runs, variants, target_loss):
    rows = summarise(runs, variants)
    with atomic_write(os.path.join(out, "results.json"), "w") as f:
        json.dump({"settings": settings, "target_loss": target_loss, "summary": rows, "runs": runs}, f, indent=1)
    table = markdown_table(rows, target_loss)
    with atomic_write(os.path.join(out, "results.md"), "w") as f:
        f.write(f"# Ablations of '{settings['preset']}' on {settings['data']}\n\n"
                "Mean ± standard deviation over seeds; the change against the baseline is paired by seed, "
                "± its standard error. Errors in percent.\n\n" + table + "\n")
    return rows, table


def _main(argv):
    args = build_parser().parse_args(argv)
    variants = _variants(args.variants)
    if args.out is None:
        data = args.data if args.data == "fashion-mnist" else os.path.basename(os.path.normpath(args.data))
        args.out = os.path.join("runs", f"ablations-{args.preset}-{data}")
    for v in variants:             # every variant must exist for this preset before any training starts
        try:
            TrainConfig(preset=args.preset, variant=v).network()
        except ValueError as exc:
            raise UserError(f"--variants {v}: {exc}") from None
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a file; give a folder for the study")
    settings = settings_of(args)
    os.makedirs(args.out, exist_ok=True)
    check_study_folder(args.out, settings)

    from . import train

    jobs = [(v, s) for v in variants for s in range(args.seeds)]
    runs = []
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="ablations", unit="run", dynamic_ncols=True, file=sys.stderr)
    try:
        for variant, seed in jobs:
            folder = os.path.join(args.out, variant, f"seed{seed}")
            result_path = os.path.join(folder, "result.json")
            if os.path.exists(result_path):
                result = _read_result(result_path, folder)
                runs.append(result)
            else:
                print(f"ablations: {variant}, seed {seed} -> {folder}", flush=True)
                try:
                    code = train.run(train_config(args, variant, seed, folder))
                except UserError as exc:
                    raise UserError(f"the run in {folder}: {exc}") from None
                if code == 130:
                    print(f"ablations: interrupted; the same command continues the study from {folder}", flush=True)
                    return 130
                if code != 0:
                    raise UserError(f"the run in {folder} failed (exit {code}; its message is above); the same "
                                    "command retries it")
                result = measure(folder, args.target_loss, args.backend, _gpus_for(args, variant))
                with atomic_write(result_path, "w") as f:
                    json.dump(result, f, indent=1)
                runs.append(result)
                write_results(args.out, settings, runs, variants, args.target_loss)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    _, table = write_results(args.out, settings, runs, variants, args.target_loss)
    print(table)
    print(f"ablations: {len(runs)} runs; results in {os.path.join(args.out, 'results.json')} and results.md")
    return 0


def main(argv=None):
    return run_cli("ablations", _main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
