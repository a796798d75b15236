"""The CPU benchmarks against PyTorch: the training step (benchmarks/step.py): a smoke run, and the PyTorch
twin's architecture; time to accuracy (benchmarks/time_to_accuracy.py): a smoke run, the shared report file,
the same batches and the same update in both frameworks.

Skipped where PyTorch is not installed (minidl itself never needs it).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from alexnet import build_model  # noqa: E402
from benchmarks import time_to_accuracy as tta  # noqa: E402
from benchmarks.step import build_torch_model, num_classes_for  # noqa: E402
from minidl.data.fashion_mnist import find_fashion_mnist  # noqa: E402


def test_quick_run_writes_report_and_json(tmp_path):
    md, js = tmp_path / "bench.md", tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.step", "--quick", "--out", str(md), "--json", str(js)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = md.read_text()
    assert "| config | minidl s/step | torch s/step | ratio |" in report
    assert "below 1 means minidl is faster" in report
    row = re.search(r"^\| mini:32 \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", report, re.M)
    assert row, report
    assert float(row.group(3)) > 0
    assert report.strip() in proc.stdout  # printed too

    data = json.loads(js.read_text())
    (res,) = data["results"]
    assert res["label"] == "mini:32"
    for fw in ("minidl", "torch"):
        assert res[fw]["median_s"] > 0
        assert all(t > 0 for run in res[fw]["runs"] for t in run["times_s"])
        assert res[fw]["peak_mb"] >= res[fw]["baseline_mb"] > 0
    assert res["ratio"] == pytest.approx(res["minidl"]["median_s"] / res["torch"]["median_s"])
    assert 0 < res["roofline_share"] and data["matmul"]["gflops"] > 0
    # the share is taken against the matmul rate measured inside the minidl run itself
    (run,) = res["minidl"]["runs"]
    assert run["matmul_gflops"] > 0 and len(run["matmul_gflops_before_after"]) == 2
    assert res["roofline_share"] == pytest.approx(
        res["step_flops"] / res["minidl"]["median_s"] / run["matmul_gflops"] / 1e9)
    assert f"{100 * res['roofline_share']:.1f}%" in report
    rows = res["profile"]["rows"]
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100.0, abs=3.0)
    names = {r["name"] for r in rows}
    assert {"conv1", "conv1.lrn", "conv3.exchange", "fc8"} <= names
    conv1 = next(r for r in rows if r["name"] == "conv1")
    assert conv1["forward_gflops"] > 0 and conv1["backward_gflops"] > 0


@pytest.mark.parametrize("preset", ["mini", "paper"])
def test_torch_twin_has_minidl_parameter_count(preset):
    classes = num_classes_for(preset)
    twin = build_torch_model(preset, classes, device="meta")    # meta: counts without allocating
    ours = build_model(preset, num_classes=classes).num_parameters()
    assert sum(p.numel() for p in twin.parameters()) == ours
    if preset == "paper":
        assert ours == 60_965_224


def test_torch_twin_mini_shapes():
    import torch

    from alexnet.configs import get_config

    twin = build_torch_model("mini")
    cfg = get_config("mini")
    convs = [m for m in twin if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [s.out_channels for s in cfg.convs]
    out = twin(torch.zeros(2, cfg.in_channels, cfg.input_size, cfg.input_size))
    assert out.shape == (2, 10)


# --------------------------------------------------------------------------------------------------
# benchmarks/time_to_accuracy.py
# --------------------------------------------------------------------------------------------------
needs_fmnist = pytest.mark.skipif(find_fashion_mnist("train") is None or find_fashion_mnist("test") is None,
                                  reason="needs Fashion-MNIST on disk")


@pytest.mark.slow
@needs_fmnist
def test_time_to_accuracy_quick_run(tmp_path):
    md, js = tmp_path / "b.md", tmp_path / "b.json"
    # one thread each: the suite runs tests side by side, and PyTorch's OpenMP threads crawl on shared cores
    proc = subprocess.run([sys.executable, "-m", "benchmarks.time_to_accuracy", "--quick", "--threads", "1",
                           "--out", str(md), "--json", str(js)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = md.read_text()
    assert text.startswith(tta.START + "\n") and text.rstrip().endswith(tta.END)
    report = text[len(tta.START) + 1:text.index(tta.END)]
    assert "smoke run" in report.splitlines()[0]
    assert report.strip() in proc.stdout                    # printed too
    assert "| minidl | 1 |" in report and "| PyTorch | 1 |" in report

    data = json.loads(js.read_text())
    runs = data["runs"]
    assert [r["framework"] for r in runs] == ["minidl", "torch"]
    for r in runs:
        assert r["data"] == {"train": 640, "val": 500, "test": 200}
        assert r["recipe"] == runs[0]["recipe"] and r["recipe"]["batch_size"] == 32
        assert r["steps"] == 640 // 32 and r["params"] == runs[0]["params"]
        points = r["points"]
        assert len(points) == 2 and points[-1]["epoch"] == 1.0
        assert all(0.0 <= p["val_top1"] <= 1.0 and p["val_images"] == 500 and p["eval_s"] >= 0 for p in points)
        times = [p["train_s"] for p in points]
        assert times[0] >= 0 and all(a < b for a, b in zip(times, times[1:]))
        assert r["train_s"] == times[-1] and r["final_val_top1"] == points[-1]["val_top1"]
        assert 0.0 <= r["test_top1"] <= 1.0 and r["test_images"] == 200
        assert r["images_per_s"] > 0 and r["peak_mb"] > 0 and r["eval_s"] >= 0
        assert all(v >= 0 for v in r["startup"].values())
        for pct in tta.TARGETS:
            first = next((p for p in points if p["val_top1"] * 100 >= pct - 1e-9), None)
            got = r["time_to"][str(pct)]
            assert (got is None) == (first is None)
            assert got is None or got["train_s"] == first["train_s"]
    assert runs[1]["torch_threads"] == 1
    assert set(data["summary"]["frameworks"]) == {"minidl", "torch"}


def test_time_to_accuracy_section_coexists_with_the_step_report(tmp_path):
    from benchmarks.step import write_report

    path = tmp_path / "benchmarks.md"
    write_report(path, "# Training-step benchmark\n\nstep table\n")
    tta.write_section(path, "# Time to accuracy\n\nfirst\n")
    text = path.read_text()
    assert text.startswith("# Training-step benchmark\n\nstep table\n\n" + tta.START)
    assert text.endswith(f"{tta.START}\n# Time to accuracy\n\nfirst\n{tta.END}\n")

    tta.write_section(path, "# Time to accuracy\n\nsecond\n")       # replaced, not appended
    text = path.read_text()
    assert text.count(tta.START) == 1 and "first" not in text and "second" in text
    assert text.startswith("# Training-step benchmark\n\nstep table\n")

    write_report(path, "# Training-step benchmark\n\nnew step table\n")   # step.py rewrites its part
    text = path.read_text()
    assert text.startswith("# Training-step benchmark\n\nnew step table\n") and "step table\n\n" in text
    assert text.count("step table") == 1
    assert text.endswith(f"{tta.START}\n# Time to accuracy\n\nsecond\n{tta.END}\n")

    fresh = tmp_path / "fresh.md"
    write_report(fresh, "# Training-step benchmark\n")
    assert fresh.read_text() == "# Training-step benchmark\n"
    only = tmp_path / "only.md"
    tta.write_section(only, "# Time to accuracy\n")
    assert only.read_text() == f"{tta.START}\n# Time to accuracy\n{tta.END}\n"
    # a section in the middle (hand-edited) moves to the end when the step report is rewritten
    mixed = tmp_path / "mixed.md"
    mixed.write_text(f"# old step\n\n{tta.START}\nsection\n{tta.END}\n\nleft over\n")
    write_report(mixed, "# new step\n")
    assert mixed.read_text() == f"# new step\n\n{tta.START}\nsection\n{tta.END}\n"


@needs_fmnist
def test_time_to_accuracy_both_workers_see_the_same_batches():
    import numpy as np

    first, second = (tta.RunData(None, 32, 0, quick=True) for _ in range(2))     # as the two workers build it
    assert first.sizes() == second.sizes() == {"train": 640, "val": 500, "test": 200}
    for epoch in (0, 1):
        for k, ((xa, ya), (xb, yb)) in enumerate(zip(first.train_batches(epoch), second.train_batches(epoch))):
            assert xa.dtype == np.float32 and xa.shape == (32, 1, 28, 28) and ya.dtype == np.int64
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
            if k == 2:
                break
    (xa, ya), (xb, yb) = next(first.eval_batches("val")), next(second.eval_batches("val"))
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    # the training batches are augmented (flips drawn per batch) and normalised like the evaluation ones
    x0, _ = next(first.train_batches(0))
    assert abs(float(x0.mean())) < 1.0 and 0.5 < float(x0.std()) < 2.0


def test_time_to_accuracy_clock_helpers():
    assert tta.eval_schedule(62, 2) == [31, 62]
    assert tta.eval_schedule(859, 4) == [215, 430, 644, 859]
    assert tta.eval_schedule(3, 4) == [1, 2, 3]           # never more points than batches
    points = [{"train_s": 1.0, "epoch": 0.25, "val_correct": 4549, "val_images": 5000},
              {"train_s": 2.0, "epoch": 0.5, "val_correct": 4550, "val_images": 5000}]
    assert tta.time_to(points, 90) == {"train_s": 1.0, "epoch": 0.25}
    assert tta.time_to(points, 91) == {"train_s": 2.0, "epoch": 0.5}     # exactly 91.00% counts
    assert tta.time_to(points, 92) is None


def test_time_to_accuracy_torch_update_is_minidls():
    import numpy as np
    import torch

    from minidl import SGD, StepLR
    from minidl.layers.base import Parameter

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
    ours = Parameter(w0.copy())
    theirs = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    stock = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt_m = SGD([ours], lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_t = tta.TorchSGD([theirs], lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_s = torch.optim.SGD([stock], lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheds = [StepLR(opt_m, 1), StepLR(opt_t, 1)]        # the rate divided by 10 after every step
    for g in grads:
        ours.grad = g.copy()
        theirs.grad, stock.grad = torch.from_numpy(g.copy()), torch.from_numpy(g.copy())
        opt_m.step()
        opt_t.step()
        opt_s.step()
        np.testing.assert_allclose(theirs.detach().numpy(), ours.data, rtol=1e-6, atol=1e-7)
        for s in scheds:
            s.step()
        for group in opt_s.param_groups:
            group["lr"] = opt_m.lr
    # why TorchSGD: torch.optim.SGD's own form differs once the rate has changed
    assert np.abs(stock.detach().numpy() - ours.data).max() > 1e-4


def test_time_to_accuracy_twin_starts_from_minidls_weights():
    import numpy as np
    import torch

    recipe = tta.resolve_recipe()
    runner = tta.TorchRunner(recipe, 10)
    ours = build_model("mini", num_classes=10, init=recipe["init"], seed=recipe["seed"]).eval()
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    # equal up to float rounding and the one channel pair where PyTorch's LRN window crosses the towers
    np.testing.assert_allclose(runner.logits(x), ours.forward(x), rtol=1e-3, atol=1e-5)
    assert runner.num_parameters() == ours.num_parameters()
    assert isinstance(runner.optim, tta.TorchSGD) and runner.optim.lr == recipe["lr"]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in runner.model)


def test_time_to_accuracy_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.time_to_accuracy", "--repeats", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--repeats" in proc.stderr and "Traceback" not in proc.stderr

    assert tta.main(["--out", str(tmp_path)]) == 2                       # a folder, not a file
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a folder" in err

    monkeypatch.setattr(tta, "have_torch", lambda: False)
    assert tta.main(["--out", str(tmp_path / "b.md")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install torch==2.13.0" in err
    assert not (tmp_path / "b.md").exists()
