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
