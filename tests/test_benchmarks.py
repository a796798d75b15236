"""The CPU training-step benchmark (benchmarks/step.py): a smoke run, and the PyTorch twin's architecture.

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
from benchmarks.step import build_torch_model, num_classes_for  # noqa: E402


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


# -- the one-shot GPU script (benchmarks/gpu_check.py), on the simulated CuPy -----------------------

@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_check_runs_every_section_and_writes_its_report(tmp_path):
    """Its CPU-side logic, end to end with tiny settings (PyTorch on the CPU stands in for cuDNN)."""
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--out", str(out),
                           "--torch-device", "cpu", "--budget", "400"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (out / "gpu_check.md").read_text()
    for heading in ("## 1. GPU tests", "## 2. Command lines", "## 3. Training step", "## 4. The paper network"):
        assert heading in report
    assert "Quick mode" in report and "0.884 after 10 epochs" in report
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["section_errors"] == {} and data["tests"]["counts"]["passed"] >= 2
    assert [r["step"] for r in data["cli"]["runs"]] == ["train", "resume", "evaluate"]
    assert [r["tf32"] for r in data["benchmark"]["rows"]] == [False, True]
    assert all(r["minidl_images_per_s"] > 0 and r["torch_images_per_s"] > 0 for r in data["benchmark"]["rows"])
    assert data["fashion"]["final"]["step"] == 3 and (out / "fashion-paper" / "checkpoints" / "last.npz").exists()


def test_gpu_check_report_says_which_section_failed():
    from benchmarks.gpu_check import render

    data = {"date": "2026-01-01", "quick": False, "budget_s": 480, "elapsed_s": 12.0, "command": "x",
            "gpu": {"name": "NVIDIA H200"}, "section_errors": {"benchmark": "RuntimeError: no cuDNN"},
            "tests": {"ok": False, "exit": 1, "summary": "1 failed, 3 passed", "failed": ["FAILED t::x"],
                      "tail": "boom", "counts": {}}}
    report = render(data)
    assert report.startswith("# GPU check: NVIDIA H200")
    assert "**1 failed, 3 passed** (failed)" in report and "- FAILED t::x" in report
    assert "Section benchmark failed: `RuntimeError: no cuDNN`" in report
