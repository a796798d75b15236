"""Everything a GPU can tell us, in one command and one report.

    python -m benchmarks.gpu_check --out DIR [--budget 480] [--data-dir FASHION_MNIST_DIR]

Runs, in order, each section within its share of ``--budget`` seconds (8
minutes by default, for a machine lent for minutes):

1. the GPU tests (``pytest -m gpu``) on the real CuPy;
2. the command lines: a few steps of ``mini`` on ``--gpus 0,0``, ``--resume``,
   ``evaluate``;
3. the training step of the ``paper`` preset at batch 128: minidl on CuPy
   against the same network in PyTorch with cuDNN on the same GPU
   (``benchmarks.step.build_torch_model``), images/s each and their ratio,
   with TF32 off and on (``CUPY_TF32`` for minidl, ``allow_tf32`` for
   PyTorch); each framework in its own process;
4. ``--preset paper --data fashion-mnist`` (upsampled to 227x227) for as many
   steps as the remaining budget allows, beside d2l.ai's AlexNet anchor.

A section that fails is reported with its error and the next one runs. The
report goes to ``DIR/gpu_check.md`` (and the raw numbers to
``DIR/gpu_check.json``), with the GPU's name and the date. ``--quick`` runs
tiny versions of every section (the tests run it on the simulated CuPy, so
this script cannot fail on a typo when a GPU is finally at hand).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D2L_ANCHOR = ("d2l.ai, AlexNet on Fashion-MNIST resized to 224x224: test accuracy 0.884 after 10 epochs "
              "(batch 128, lr 0.01), 4,186 images/s on a Tesla V100")
# share of the budget each section may take; the Fashion-MNIST run takes what is left
SHARES = {"tests": 0.30, "cli": 0.15, "benchmark": 0.25}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd, timeout, env=None):
    """(exit code or 'timeout', stdout, stderr) of a command; a timeout stops it with SIGINT first."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=max(timeout, 1))
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return "timeout", out, err


def gpu_info():
    """Name, memory, compute capability and versions of GPU 0, as CuPy reports them."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "devices": cupy.cuda.runtime.getDeviceCount(), "cupy": getattr(cupy, "__version__", "?"),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}


# -- 1. the GPU tests ---------------------------------------------------------------------

def section_tests(args, budget):
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    if args.quick:              # two tests, from the two files that hold them (collecting all tests takes long)
        cmd += ["tests/test_gpu_paths.py", "tests/test_cuda_sources.py",
                "-k", "test_a_training_step_waits_for_no_gpu or test_maxpool_kernels_equal_numpy"]
    else:
        cmd += ["tests"]
    rc, out, err = _run(cmd, budget)
    summary = (out.strip().splitlines() or [""])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return {"ok": rc == 0, "exit": rc, "summary": summary, "counts": counts, "failed": failed[:20],
            "tail": "" if rc == 0 else (out + err)[-3000:]}


# -- 2. the command lines ------------------------------------------------------------------

def section_cli(args, budget):
    run = Path(args.out) / "cli-run"
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    steps = (2, 3) if args.quick else (20, 30)
    images, tests = ("256", "100") if args.quick else ("2048", "500")
    train = [sys.executable, "-m", "alexnet.train", "--backend", "cupy", "--gpus", "0,0", "--train-subset", images,
             "--batch-size", "64", "--test-subset", tests, "--no-progress", "--out", str(run), *data]
    deadline = time.monotonic() + budget
    log = []
    for name, cmd in (("train", [*train, "--max-steps", str(steps[0])]),
                      ("resume", [sys.executable, "-m", "alexnet.train", "--out", str(run), "--resume",
                                  "--max-steps", str(steps[1]), "--no-progress"]),
                      ("evaluate", [sys.executable, "-m", "alexnet.evaluate", "--run", str(run), "--backend", "cupy",
                                    "--gpus", "0,0", "--limit", tests])):
        t0 = time.perf_counter()
        rc, out, err = _run(cmd, deadline - time.monotonic())
        log.append({"step": name, "exit": rc, "seconds": round(time.perf_counter() - t0, 1),
                    "last": (out.strip().splitlines() or [""])[-1][:300] if rc == 0 else (err or out)[-1500:]})
        if rc != 0:
            break
    return {"ok": all(e["exit"] == 0 for e in log) and len(log) == 3, "runs": log}


# -- 3. the training-step benchmark -----------------------------------------------------------

def _timed(step, sync, args):
    """Seconds of each of ``args.steps`` steps after ``args.warmup`` untimed ones, waiting for the GPU."""
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _worker(args):
    """One framework, one TF32 setting: print one JSON line of step times."""
    import numpy as np

    from alexnet.configs import get_config
    from benchmarks.step import build_torch_model, make_batch, num_classes_for

    cfg = get_config(args.preset)
    classes = num_classes_for(cfg.name)
    x, y = make_batch(cfg, args.batch, classes)
    if args.worker == "minidl":
        import cupy

        from alexnet import build_model
        from minidl import SGD, SoftmaxCrossEntropy

        model = build_model(cfg.name, num_classes=classes, devices=["cuda:0", "cuda:0"]).train()
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        loss_fn = SoftmaxCrossEntropy()
        with cupy.cuda.Device(0):
            xd, yd = cupy.asarray(x), cupy.asarray(y)

            def step():
                opt.zero_grad()
                loss_fn.compute(model.forward(xd), yd)
                model.backward(loss_fn.backward())
                opt.step()

            times = _timed(step, cupy.cuda.runtime.deviceSynchronize, args)
        meta = {"cupy_tf32": os.environ.get("CUPY_TF32", "0")}
    else:
        import torch

        dev = torch.device(args.torch_device)
        torch.manual_seed(0)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(args.tf32)
        torch.backends.cudnn.benchmark = True
        model = build_torch_model(cfg.name, classes).to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        crit = torch.nn.CrossEntropyLoss()
        xd, yd = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

        def step():
            opt.zero_grad(set_to_none=True)
            crit(model(xd), yd).backward()
            opt.step()

        times = _timed(step, torch.cuda.synchronize if dev.type == "cuda" else lambda: None, args)
        meta = {"torch": torch.__version__, "device": str(dev),
                "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None}
    print(json.dumps({"framework": args.worker, "tf32": bool(args.tf32), "times_s": times, **meta}), flush=True)
    return 0 if np.all(np.isfinite(times)) else 1


def section_benchmark(args, budget):
    preset, batch = ("mini", 16) if args.quick else ("paper", 128)
    steps, warmup = (2, 1) if args.quick else (10, 3)
    deadline = time.monotonic() + budget
    results, errors = [], []
    for tf32 in (0, 1):
        for fw in ("minidl", "torch"):
            env = _env()
            env["CUPY_TF32"] = str(tf32)
            cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--worker", fw, "--preset", preset, "--batch",
                   str(batch), "--steps", str(steps), "--warmup", str(warmup), "--tf32", str(tf32),
                   "--torch-device", args.torch_device]
            rc, out, err = _run(cmd, deadline - time.monotonic(), env)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if rc != 0 or not lines:
                errors.append(f"{fw} (TF32 {'on' if tf32 else 'off'}): exit {rc}: {(err or out)[-1500:]}")
                continue
            res = json.loads(lines[-1])
            res["median_s"] = statistics.median(res["times_s"])
            res["images_per_s"] = batch / res["median_s"]
            results.append(res)
    rows = []
    for tf32 in (False, True):
        pair = {r["framework"]: r for r in results if r["tf32"] == tf32}
        if "minidl" in pair and "torch" in pair:
            rows.append({"tf32": tf32, "minidl_images_per_s": pair["minidl"]["images_per_s"],
                         "torch_images_per_s": pair["torch"]["images_per_s"],
                         "share_of_torch": pair["minidl"]["images_per_s"] / pair["torch"]["images_per_s"]})
    return {"ok": not errors and len(rows) == 2, "preset": preset, "batch": batch, "steps": steps,
            "warmup": warmup, "results": results, "rows": rows, "errors": errors}


# -- 4. the paper network on Fashion-MNIST ------------------------------------------------------

def section_fashion(args, budget, images_per_s):
    run = Path(args.out) / "fashion-paper"
    batch = 16 if args.quick else 128
    preset = "mini" if args.quick else "paper"
    # leave a fifth of the time for start-up and the evaluations of the test set
    steps = 3 if args.quick else max(1, int(0.8 * budget * (images_per_s or 500) / batch))
    cmd = [sys.executable, "-m", "alexnet.train", "--preset", preset, "--data", "fashion-mnist", "--backend", "cupy",
           "--gpus", "0,0", "--batch-size", str(batch), "--lr", "0.01", "--epochs", "10", "--max-steps", str(steps),
           "--no-progress", "--out", str(run)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.quick:
        cmd += ["--train-subset", "256", "--test-subset", "100"]
    t0 = time.perf_counter()
    rc, out, err = _run(cmd, budget)
    records = []
    if (run / "metrics.jsonl").exists():
        records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    evals = [r for r in records if "test_top1" in r]
    epochs = [r for r in records if r.get("type") == "epoch"]
    return {"ok": rc == 0 and bool(evals), "exit": rc, "seconds": round(time.perf_counter() - t0, 1),
            "steps_asked": steps, "batch": batch, "preset": preset,
            "epochs": [{k: r.get(k) for k in ("epoch", "train_loss", "test_top1", "images_per_s", "time")}
                       for r in epochs],
            "final": evals[-1] if evals else None,
            "tail": "" if rc == 0 else (err or out)[-1500:]}


# -- the report -----------------------------------------------------------------------------------

def render(data):
    g = data.get("gpu") or {}
    L = [f"# GPU check: {g.get('name', 'unknown GPU')}", ""]
    if data["quick"]:
        L += ["**Quick mode**: tiny settings, to test this script; the numbers mean nothing.", ""]
    L += [f"{data['date']}, `{data['command']}` on {platform.node() or 'this machine'}: "
          f"{g.get('devices', '?')} device(s), {g.get('memory_gib', '?')} GiB, compute capability "
          f"{g.get('compute_capability', '?')}, CuPy {g.get('cupy', '?')}, CUDA runtime {g.get('cuda_runtime', '?')}; "
          f"budget {data['budget_s']} s, used {data['elapsed_s']:.0f} s.", ""]
    t = data.get("tests")
    L += ["## 1. GPU tests", ""]
    if t:
        L += [f"`pytest -m gpu`: **{t['summary'] or t['exit']}**" + ("" if t["ok"] else " (failed)"), ""]
        L += [f"- {f}" for f in t["failed"]] + ([""] if t["failed"] else [])
        if t["tail"]:
            L += ["```", t["tail"], "```", ""]
    c = data.get("cli")
    L += ["## 2. Command lines (mini, --gpus 0,0)", "", "| step | exit | seconds | last line |", "|---|---|---|---|"]
    for e in (c or {}).get("runs", []):
        L.append(f"| {e['step']} | {e['exit']} | {e['seconds']} | {e['last'].splitlines()[-1] if e['last'] else ''} |")
    L.append("")
    b = data.get("benchmark")
    L += ["## 3. Training step: minidl on CuPy vs PyTorch with cuDNN, same GPU", ""]
    if b:
        L += [f"{b['preset']} preset, batch {b['batch']}, median of {b['steps']} steps after {b['warmup']} "
              "warm-up steps, one process per framework.", "",
              "| TF32 | minidl images/s | PyTorch images/s | minidl / PyTorch |", "|---|---|---|---|"]
        for r in b["rows"]:
            L.append(f"| {'on' if r['tf32'] else 'off'} | {r['minidl_images_per_s']:.0f} | "
                     f"{r['torch_images_per_s']:.0f} | {r['share_of_torch']:.2f} |")
        L += [""] + [f"- error: {e}" for e in b["errors"]] + ([""] if b["errors"] else [])
    f = data.get("fashion")
    L += ["## 4. The paper network on Fashion-MNIST (227x227)", "", f"Anchor: {D2L_ANCHOR}.", ""]
    if f:
        L += [f"{f['preset']} preset, batch {f['batch']}, lr 0.01, up to {f['steps_asked']} steps in "
              f"{f['seconds']} s (exit {f['exit']}).", "", "| epoch | train loss | test top-1 | images/s |",
              "|---|---|---|---|"]
        for e in f["epochs"]:
            L.append(f"| {e['epoch']} | {e['train_loss']:.4f} | {100 * e['test_top1']:.2f}% | "
                     f"{e['images_per_s']:.0f} |" if e.get("test_top1") is not None else
                     f"| {e['epoch']} | {e['train_loss']:.4f} | | {e['images_per_s']:.0f} |")
        if f["final"]:
            L += ["", f"Last evaluation (step {f['final']['step']}): test top-1 {100 * f['final']['test_top1']:.2f}%."]
        if f["tail"]:
            L += ["", "```", f["tail"], "```"]
    for name, err in data.get("section_errors", {}).items():
        L += ["", f"Section {name} failed: `{err}`"]
    return "\n".join(L) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu-check", help="folder for gpu_check.md, gpu_check.json and the runs")
    p.add_argument("--budget", type=float, default=480, help="seconds for all sections together (default 480)")
    p.add_argument("--data-dir", default=None, help="where Fashion-MNIST's .gz files are (default: searched)")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing")
    p.add_argument("--torch-device", default="cuda", help=argparse.SUPPRESS)     # 'cpu' in the tests
    p.add_argument("--worker", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--preset", default="paper", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--tf32", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)

    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
            "budget_s": args.budget, "section_errors": {},
            "command": "python -m benchmarks.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])}

    def left():
        return args.budget - (time.monotonic() - started)

    def section(name, fn, *a):
        print(f"[{time.monotonic() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
        try:
            data[name] = fn(*a)
        except Exception as exc:  # noqa: BLE001  (reported; the next section still runs)
            data["section_errors"][name] = f"{type(exc).__name__}: {exc}"

    section("gpu", gpu_info)
    section("tests", section_tests, args, SHARES["tests"] * args.budget)
    section("cli", section_cli, args, SHARES["cli"] * args.budget)
    section("benchmark", section_benchmark, args, min(SHARES["benchmark"] * args.budget, left()))
    rows = (data.get("benchmark") or {}).get("rows") or []
    section("fashion", section_fashion, args, max(left() - 10, 30), rows[0]["minidl_images_per_s"] if rows else None)
    data["elapsed_s"] = time.monotonic() - started
    report = render(data)
    (out / "gpu_check.md").write_text(report)
    (out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str))
    print(report)
    ok = all((data.get(k) or {}).get("ok") for k in ("tests", "cli", "benchmark", "fashion"))
    return 0 if ok and not data["section_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
