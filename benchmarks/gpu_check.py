"""Everything a GPU can tell us, in one command and one report.

    python -m benchmarks.gpu_check --data-dir FASHION_MNIST_DIR --out REPORT_DIR [--budget 480]

Made for a GPU machine lent for a few minutes, without network: it reads
nothing from the internet, finishes within ``--budget`` seconds (8 minutes
by default, for a command limit of 10) and writes its report after every
section, so a run stopped at the time limit keeps what it finished.
Sections, in order, each within its share of the time left (time one
section does not use goes to the ones after it):

1. ``tests`` (33%): the GPU tests, ``pytest -m gpu tests``, on the real
   CuPy, in several processes where pytest-xdist is installed. They run on
   CuPy's own reduction kernels (``CUPY_ACCELERATORS`` empty): with CuPy's
   default, CUB, a fresh machine compiles a CUB kernel for every new
   reduction, seconds each;
2. ``cli`` (12%): the command lines: a few steps of ``mini`` on
   ``--gpus 0,0``, ``--resume``, ``evaluate``;
3. ``benchmark`` (25%): the ``paper`` preset's training step at batch 128,
   minidl on CuPy against the same network in PyTorch with cuDNN
   (``benchmarks.step.build_torch_model``), TF32 off and on, each framework
   in its own process; minidl's forward pass alone too (evaluation speed);
4. ``fashion`` (the rest): ``--preset paper --data fashion-mnist``
   (upsampled to 227x227) trained until its share is nearly spent
   (``--max-minutes``), leaving time for its last evaluation and
   checkpoints, beside d2l.ai's AlexNet anchor.

Fashion-MNIST's four ``.gz`` files (30 MB) must be in ``--data-dir`` (or
``$MINIDL_DATA``, or a place ``minidl.data`` searches): they are checked
first, and without them the script stops in one line that says what to
copy. Every section is given that folder.

``REPORT_DIR`` gets ``gpu_check.md``, ``gpu_check.json`` and one log per
section (``tests.log`` ..., their last 256 KB): nothing else, so it can be
small enough to copy back. Run folders and checkpoints (the paper's
``last.npz`` is 0.5 GB) go to ``--work``, a temporary folder removed at the
end, never into ``REPORT_DIR``. Each section runs in a process group of its
own: at its deadline the whole group gets SIGINT, then SIGKILL, so no test
process keeps the GPU busy while the next section measures it.

``--quick`` runs tiny versions of every section (most GPU tests of two
files; the ``mini`` preset) to check this script: tests/test_gpu_check.py
rehearses it on the simulated CuPy as the lent machine would run it.
``--sections`` runs some sections only, e.g. to run one again.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from minidl.atomic import atomic_write  # noqa: E402

D2L_ANCHOR = ("d2l.ai, AlexNet on Fashion-MNIST resized to 224x224: test accuracy 0.884 after 10 epochs "
              "(batch 128, lr 0.01), 4,186 images/s on a Tesla V100")
SECTIONS = ("tests", "cli", "benchmark", "fashion")
SHARES = {"tests": 0.33, "cli": 0.12, "benchmark": 0.25, "fashion": 0.30}
# --quick: the GPU tests of these two files but their two longest (a resume and every command on the GPU, 10 to
# 13 s each on the simulated CuPy, where the whole suite runs them anyway): the section's workings are what it checks
QUICK_TESTS = ("test_cuda_sources or (test_gpu_paths and not test_resume_on_gpus_is_bit_exact "
               "and not test_evaluate_predict_and_visualize_on_gpus_equal_numpy)")
LOG_TAIL = 256 * 1024
GRACE_S = 20                 # after SIGINT at a deadline, before SIGKILL
NESTED = "MINIDL_GPU_CHECK"  # set for every command this script starts


class CheckError(Exception):
    """A mistake in how the script was started: said in one line, exit 2."""


# -- running commands ----------------------------------------------------------------------

def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    env[NESTED] = "1"
    env.update(extra)
    return env


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _own_group():
    """In the child, before it runs: a process group of its own (in this session, so that whoever ends
    this session ends it too), and, on Linux, death with this process if this one is killed."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def run_group(cmd, timeout, env, log, started=None):
    """Run ``cmd`` in a process group of its own, its output (stdout and stderr) into ``log``.

    Returns (exit code, or 'timeout'; output). At the deadline the whole group is interrupted
    (SIGINT, as Ctrl-C: a training run saves, pytest reports what ran), then killed after
    GRACE_S seconds; whatever the group left running is killed when the command ends.
    ``started(pid)`` is told the group's id.
    """
    log = Path(log)
    with open(log, "w") as f:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_own_group)
        try:
            if started is not None:
                started(proc.pid)
            rc = proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = "timeout"
        except BaseException:
            _kill_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            _kill_group(proc.pid, signal.SIGKILL)       # grandchildren that outlived their parent
    return rc, log.read_text(errors="replace")


def _tail(text, n=3000):
    return text[-n:]


# -- the machine and the data ----------------------------------------------------------------

GPU_PROBE = r"""
import json, sys
import cupy
from importlib import metadata
props = cupy.cuda.runtime.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
dists = sorted(set(metadata.packages_distributions().get("cupy", [])))
print(json.dumps({"name": name, "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
                  "compute_capability": f"{props['major']}.{props['minor']}",
                  "devices": cupy.cuda.runtime.getDeviceCount(), "cupy": cupy.__version__,
                  "cupy_package": ", ".join(f"{d} {metadata.version(d)}" for d in dists) or "?",
                  "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                  "cuda_driver": cupy.cuda.runtime.driverGetVersion()}))
"""


def gpu_info(ctx):
    """GPU 0's name, memory and compute capability, and which CuPy package drives it (in a child process)."""
    rc, out = run_group([sys.executable, "-c", GPU_PROBE], 120, ctx.env(), ctx.work / "gpu-probe.log")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError(f"CuPy sees no GPU (exit {rc}): {_tail(out, 500).strip()}")
    return json.loads(lines[-1])


def find_data(data_dir):
    """The folder holding Fashion-MNIST's four files, checked readable; CheckError saying what to copy."""
    from minidl.data.fashion_mnist import FILES, FashionMNIST, find_fashion_mnist

    names = ", ".join(f"{n}.gz" for split in FILES.values() for n in split)
    found = find_fashion_mnist("train", data_dir)
    folder = found[0].parent if found else None
    if folder is None or find_fashion_mnist("test", folder) is None:
        where = data_dir or os.environ.get("MINIDL_DATA") or "the places minidl.data searches"
        raise CheckError(f"Fashion-MNIST not found in {where}: copy its four files ({names}; 30 MB, Debian: "
                         "/usr/share/datasets/fashion-mnist) to this machine and pass their folder with "
                         "--data-dir (nothing is downloaded)")
    try:
        for split in ("train", "test"):
            FashionMNIST(split, data_dir=folder, download=False)
    except Exception as exc:  # noqa: BLE001  (a damaged copy: said in one line)
        raise CheckError(f"Fashion-MNIST in {folder} is unusable: {str(exc).splitlines()[0]}; copy the four "
                         "files again") from None
    return folder.resolve()


def eval_transform_rate(preset, data_dir, images=256):
    """Images/s of the CPU side of evaluation (Fashion-MNIST upsampled to the preset's input), one thread."""
    from alexnet.configs import get_config
    from alexnet.dataspec import describe_data, make_transforms, open_split

    spec = describe_data("fashion-mnist", str(data_dir), preset)
    _, evalt = make_transforms(spec, get_config(preset).input_size)
    x = open_split(spec, "test").images[:images]
    t0 = time.perf_counter()
    evalt(x)
    return images / max(time.perf_counter() - t0, 1e-9)


# -- 1. the GPU tests ---------------------------------------------------------------------

def xdist_workers():
    """Test processes to run in parallel (pytest-xdist), or 1 without it."""
    try:
        import xdist  # noqa: F401
    except ImportError:
        return 1
    return min(8, max(2, (os.cpu_count() or 2) // 2))


def parse_pytest(out):
    """The summary line of a pytest run, its counts, and its FAILED/ERROR lines."""
    summary = ""
    for line in reversed(out.splitlines()):
        if re.search(r"\d+ (passed|failed|errors?|skipped|deselected)\b", line) and " in " in line:
            summary = line.strip("= ")
            break
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return summary, counts, failed


def section_tests(ctx, budget):
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider", "tests"]
    if ctx.quick:
        cmd += ["-k", QUICK_TESTS]
    workers = xdist_workers()
    if workers > 1:              # a file's tests in one process: its module fixtures are made once
        cmd += ["-n", str(workers), "--dist", "loadfile"]
    t0 = time.perf_counter()
    rc, out = ctx.run("tests", cmd, budget, ctx.env(CUPY_ACCELERATORS=""))
    summary, counts, failed = parse_pytest(out)
    return {"ok": rc == 0, "exit": rc, "summary": summary, "counts": counts, "failed": failed[:30],
            "workers": workers, "seconds": round(time.perf_counter() - t0, 1), "selection": QUICK_TESTS
            if ctx.quick else "all", "tail": "" if rc == 0 else _tail(out)}


# -- 2. the command lines ------------------------------------------------------------------

def section_cli(ctx, budget):
    run = ctx.work / "cli-run"
    shutil.rmtree(run, ignore_errors=True)
    steps = (2, 3) if ctx.quick else (20, 30)
    images, tests = ("256", "100") if ctx.quick else ("2048", "500")
    data = ["--data-dir", ctx.data_dir]
    train = [sys.executable, "-m", "alexnet.train", "--backend", "cupy", "--gpus", "0,0", "--train-subset", images,
             "--val-size", tests, "--batch-size", "64", "--test-subset", tests, "--no-progress", "--out", run, *data]
    deadline = time.monotonic() + budget
    log = []
    for name, cmd in (("train", [*train, "--max-steps", str(steps[0])]),
                      ("resume", [sys.executable, "-m", "alexnet.train", "--out", run, "--resume",
                                  "--max-steps", str(steps[1]), "--no-progress", *data]),
                      ("evaluate", [sys.executable, "-m", "alexnet.evaluate", "--run", run, "--backend", "cupy",
                                    "--gpus", "0,0", "--limit", tests])):
        t0 = time.perf_counter()
        rc, out = ctx.run("cli", cmd, deadline - time.monotonic(), ctx.env(), append=name)
        lines = out.strip().splitlines() or [""]
        log.append({"step": name, "exit": rc, "seconds": round(time.perf_counter() - t0, 1),
                    "last": lines[-1][:300] if rc == 0 else _tail(out, 1500)})
        if rc != 0:
            break
    return {"ok": len(log) == 3 and all(e["exit"] == 0 for e in log), "runs": log}


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
    """One framework, one TF32 setting: print one JSON line of step times (and, for minidl, forward times)."""
    import numpy as np

    from alexnet.configs import get_config
    from benchmarks.step import build_torch_model, make_batch, num_classes_for

    cfg = get_config(args.preset)
    classes = num_classes_for(cfg.name)
    x, y = make_batch(cfg, args.batch, classes)
    extra = {}
    if args.worker == "minidl":
        import cupy

        from alexnet import build_model
        from minidl import SGD, SoftmaxCrossEntropy

        model = build_model(cfg.name, num_classes=classes, devices=["cuda:0", "cuda:0"]).train()
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        loss_fn = SoftmaxCrossEntropy()
        sync = cupy.cuda.runtime.deviceSynchronize
        with cupy.cuda.Device(0):
            xd, yd = cupy.asarray(x), cupy.asarray(y)

            def step():
                opt.zero_grad()
                loss_fn.compute(model.forward(xd), yd)
                model.backward(loss_fn.backward())
                opt.step()

            times = _timed(step, sync, args)
            model.eval()
            extra["forward_times_s"] = _timed(lambda: model.forward(xd), sync, args)
        extra["cupy_tf32"] = os.environ.get("CUPY_TF32", "0")
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
        extra = {"torch": torch.__version__, "device": str(dev),
                 "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None}
    print(json.dumps({"framework": args.worker, "tf32": bool(args.tf32), "times_s": times, **extra}), flush=True)
    return 0 if np.all(np.isfinite(times)) else 1


def section_benchmark(ctx, budget):
    preset, batch = ("mini", 16) if ctx.quick else ("paper", 128)
    steps, warmup = (2, 1) if ctx.quick else (10, 3)
    deadline = time.monotonic() + budget
    results, errors = [], []
    for tf32 in (0, 1):
        for fw in ("minidl", "torch"):
            cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--worker", fw, "--preset", preset, "--batch",
                   str(batch), "--steps", str(steps), "--warmup", str(warmup), "--tf32", str(tf32),
                   "--torch-device", ctx.args.torch_device]
            rc, out = ctx.run("benchmark", cmd, deadline - time.monotonic(), ctx.env(CUPY_TF32=str(tf32)),
                              append=f"{fw}, TF32 {'on' if tf32 else 'off'}")
            lines = [ln for ln in out.splitlines() if ln.startswith('{"framework"')]
            if rc != 0 or not lines:
                errors.append(f"{fw} (TF32 {'on' if tf32 else 'off'}): exit {rc}: {_tail(out, 1500)}")
                continue
            res = json.loads(lines[-1])
            res["median_s"] = statistics.median(res["times_s"])
            res["images_per_s"] = batch / res["median_s"]
            if "forward_times_s" in res:
                res["forward_images_per_s"] = batch / statistics.median(res["forward_times_s"])
            results.append(res)
    rows = []
    for tf32 in (False, True):
        pair = {r["framework"]: r for r in results if r["tf32"] == tf32}
        if "minidl" in pair and "torch" in pair:
            rows.append({"tf32": tf32, "minidl_images_per_s": pair["minidl"]["images_per_s"],
                         "minidl_forward_images_per_s": pair["minidl"].get("forward_images_per_s"),
                         "torch_images_per_s": pair["torch"]["images_per_s"],
                         "share_of_torch": pair["minidl"]["images_per_s"] / pair["torch"]["images_per_s"]})
    return {"ok": not errors and len(rows) == 2, "preset": preset, "batch": batch, "steps": steps,
            "warmup": warmup, "results": results, "rows": rows, "errors": errors}


# -- 4. the paper network on Fashion-MNIST ------------------------------------------------------

def plan_fashion(budget, parameters, eval_images_per_s, test_images=10000, min_test=1000, val_images=1000,
                 write_bytes_per_s=2e8, start_s=10.0):
    """How long to train, and on how many test images to evaluate, to finish within ``budget`` seconds.

    Training stops at its ``--max-minutes`` (start-up, the evaluations and checkpoints at each epoch's
    end included, since they happen inside the limit); what comes after the limit must fit in the rest:
    a checkpoint (weights and velocities, 8 bytes a parameter), the last evaluation (``val_images``
    validation and the test images), the checkpoint again and best.npz (4 bytes a parameter), at a
    conservative disk speed; then a tenth of the budget spare. An evaluation of the test images gets at
    most a tenth of the budget.
    """
    test = min(test_images, max(min_test, int(0.1 * budget * eval_images_per_s) // 100 * 100))
    after = 20 * parameters / write_bytes_per_s + (val_images + test) / eval_images_per_s
    train_s = budget - after - 0.1 * budget
    minutes = math.floor(train_s / 60 * 1000) / 1000          # rounded down: the plan must fit
    return {"train_minutes": minutes if train_s > start_s else None, "test_images": test, "val_images": val_images,
            "after_limit_s": round(after, 1), "budget_s": round(budget, 1)}


def section_fashion(ctx, budget):
    from alexnet import build_model

    run = ctx.work / "fashion-paper"
    shutil.rmtree(run, ignore_errors=True)
    batch, preset = (16, "mini") if ctx.quick else (128, "paper")
    # evaluation speed: the slower of the GPU's forward pass (section 3) and the CPU's upsampling
    rows = (ctx.data.get("benchmark") or {}).get("rows") or []
    forward = rows[0]["minidl_forward_images_per_s"] if rows else None
    cpu = eval_transform_rate(preset, ctx.data_dir)
    eval_rate = 0.5 * min(forward or cpu, cpu)
    params = build_model(preset, num_classes=10, in_channels=1).num_parameters()
    plan = plan_fashion(budget, params, eval_rate, test_images=100 if ctx.quick else 10000,
                        min_test=100 if ctx.quick else 1000, val_images=100 if ctx.quick else 1000)
    plan.update(eval_images_per_s=round(eval_rate), forward_images_per_s=forward, cpu_eval_images_per_s=round(cpu))
    if ctx.quick and plan["train_minutes"]:
        plan["train_minutes"] = min(plan["train_minutes"], 0.25)
    if plan["train_minutes"] is None:
        return {"ok": False, "plan": plan, "exit": None, "epochs": [], "final": None, "batch": batch,
                "preset": preset, "tail": f"not run: {budget:.0f} s leave no time to train"}
    cmd = [sys.executable, "-m", "alexnet.train", "--preset", preset, "--data", "fashion-mnist", "--backend", "cupy",
           "--gpus", "0,0", "--batch-size", batch, "--lr", "0.01", "--epochs", "10",
           "--max-minutes", plan["train_minutes"], "--test-subset", plan["test_images"],
           "--val-size", plan["val_images"], "--checkpoint-minutes", "0",
           "--no-progress", "--out", run, "--data-dir", ctx.data_dir]
    if ctx.quick:
        cmd += ["--train-subset", "256"]
    t0 = time.perf_counter()
    rc, out = ctx.run("fashion", cmd, budget, ctx.env())
    records = []
    if (run / "metrics.jsonl").exists():
        records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    evals = [r for r in records if "test_top1" in r]
    epochs = [r for r in records if r.get("type") == "epoch"]
    steps = [r for r in records if r.get("type") == "step"]
    return {"ok": rc == 0 and bool(evals), "exit": rc, "seconds": round(time.perf_counter() - t0, 1), "plan": plan,
            "batch": batch, "preset": preset, "images_per_s": steps[-1]["images_per_s"] if steps else None,
            "epochs": [{k: r.get(k) for k in ("epoch", "train_loss", "test_top1", "images_per_s", "time")}
                       for r in epochs],
            "final": evals[-1] if evals else None, "tail": "" if rc == 0 else _tail(out, 1500)}


# -- the report -----------------------------------------------------------------------------------

def _status(data, name):
    s = data["status"].get(name)
    if s is None:
        return "not run"
    if s["state"] == "interrupted":
        return f"**interrupted** after {s['seconds']:.0f} s (Ctrl-C or SIGTERM)"
    if s["state"] == "running":
        return f"**did not finish**: still running {s.get('seconds', 0):.0f} s after it started, when this report " \
               "was last written (the command was stopped here)"
    return f"{s['state']} in {s['seconds']:.0f} s (allowed {s['allowed']:.0f} s)"


def render(data):
    g = data.get("gpu") or {}
    L = [f"# GPU check: {g.get('name', 'unknown GPU')}", ""]
    if data["quick"]:
        L += ["**Quick mode**: tiny settings, to test this script; the numbers mean nothing.", ""]
    L += [f"{data['date']}, `{data['command']}` on {data.get('host') or 'this machine'}: "
          f"{g.get('devices', '?')} device(s), {g.get('memory_gib', '?')} GiB, compute capability "
          f"{g.get('compute_capability', '?')}, CuPy {g.get('cupy', '?')} ({g.get('cupy_package', '?')}), "
          f"CUDA runtime {g.get('cuda_runtime', '?')}, driver {g.get('cuda_driver', '?')}; Fashion-MNIST from "
          f"`{data.get('data_dir')}`; budget {data['budget_s']:.0f} s, used {data.get('elapsed_s', 0):.0f} s.", ""]
    t = data.get("tests")
    L += ["## 1. GPU tests", "", _status(data, "tests"), ""]
    if t:
        how = f"{t['workers']} processes" if t["workers"] > 1 else "one process"
        L += [f"`pytest -m gpu` ({'tests of ' + t['selection'] if t['selection'] != 'all' else 'every GPU test'}, "
              f"{how}, CuPy's own reductions): **{t['summary'] or t['exit']}**" + ("" if t["ok"] else " (failed)"), ""]
        L += [f"- {f}" for f in t["failed"]] + ([""] if t["failed"] else [])
        if t["tail"]:
            L += ["```", t["tail"], "```", ""]
    c = data.get("cli")
    L += ["## 2. Command lines (mini, --gpus 0,0)", "", _status(data, "cli"), "",
          "| step | exit | seconds | last line |", "|---|---|---|---|"]
    for e in (c or {}).get("runs", []):
        last = e["last"].strip().splitlines()[-1] if e["last"].strip() else ""
        L.append(f"| {e['step']} | {e['exit']} | {e['seconds']} | {last} |")
    L.append("")
    b = data.get("benchmark")
    L += ["## 3. Training step: minidl on CuPy vs PyTorch with cuDNN, same GPU", "", _status(data, "benchmark"), ""]
    if b:
        L += [f"{b['preset']} preset, batch {b['batch']}, median of {b['steps']} steps after {b['warmup']} "
              "warm-up steps, one process per framework.", "",
              "| TF32 | minidl images/s | PyTorch images/s | minidl / PyTorch | minidl forward only, images/s |",
              "|---|---|---|---|---|"]
        for r in b["rows"]:
            fwd = r.get("minidl_forward_images_per_s")
            L.append(f"| {'on' if r['tf32'] else 'off'} | {r['minidl_images_per_s']:.0f} | "
                     f"{r['torch_images_per_s']:.0f} | {r['share_of_torch']:.2f} | "
                     f"{f'{fwd:.0f}' if fwd else ''} |")
        L += [""] + [f"- error: {e}" for e in b["errors"]] + ([""] if b["errors"] else [])
    f = data.get("fashion")
    L += ["## 4. The paper network on Fashion-MNIST (227x227)", "", _status(data, "fashion"), "",
          f"Anchor: {D2L_ANCHOR}.", ""]
    if f:
        p = f["plan"]
        L += [f"{f['preset']} preset, batch {f['batch']}, lr 0.01, trained for at most {p['train_minutes']} min "
              f"(start-up included), evaluated on {p.get('val_images', 0)} validation and {p['test_images']} test "
              f"images (planned at "
              f"{p['eval_images_per_s']} images/s; {p['after_limit_s']} s kept for the end), exit "
              f"{f['exit']}" + (f", {f['images_per_s']:.0f} images/s while training." if f.get("images_per_s")
                                 else "."), "",
              "| epoch | train loss | test top-1 | images/s |", "|---|---|---|---|"]
        for e in f["epochs"]:
            top1 = f"{100 * e['test_top1']:.2f}%" if e.get("test_top1") is not None else ""
            L.append(f"| {e['epoch']} | {e['train_loss']:.4f} | {top1} | {e['images_per_s']:.0f} |")
        if f["final"]:
            L += ["", f"Last evaluation (step {f['final']['step']}): test top-1 {100 * f['final']['test_top1']:.2f}%."]
        if f["tail"]:
            L += ["", "```", f["tail"], "```"]
    for name, err in data.get("section_errors", {}).items():
        L += ["", f"Section {name} failed: `{err}`"]
    return "\n".join(L) + "\n"


# -- the run --------------------------------------------------------------------------------------

class Check:
    """One run of the script: its settings, folders, clock and report."""

    def __init__(self, args, argv):
        self.args, self.quick = args, args.quick
        self.out = Path(args.out).resolve()
        work = Path(args.work).resolve() if args.work else None
        if work is not None and (work == self.out or self.out in work.parents):
            raise CheckError(f"--work {work} is inside --out {self.out}: run folders and checkpoints "
                             "(0.5 GB) must not land in the report's folder; give another --work")
        self.data_dir = find_data(args.data_dir)
        self.own_work = work is None
        self.work = work or Path(tempfile.mkdtemp(prefix="gpu-check-work-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.data = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                     "quick": args.quick, "budget_s": args.budget, "data_dir": str(self.data_dir),
                     "host": platform.node(), "sections": list(args.sections), "status": {}, "section_errors": {},
                     "command": "python -m benchmarks.gpu_check " + " ".join(argv)}

    def env(self, **extra):
        return _env(MINIDL_DATA=str(self.data_dir), **extra)

    def left(self):
        return self.args.budget - (time.monotonic() - self.started)

    def run(self, section, cmd, timeout, env, append=None):
        """A command of a section: its output goes to the section's log in the report folder (the tail)."""
        def started(pgid):          # in the report: the processes to end if this script is killed
            self.data["status"][section]["pgid"] = pgid
            self.write()

        rc, out = run_group(cmd, timeout, env, self.work / f"{section}.current.log", started)
        log = self.out / f"{section}.log"
        previous = log.read_text(errors="replace") if append and log.exists() else ""
        head = f"== {append}: {' '.join(map(str, cmd))}\n" if append else ""
        with atomic_write(log, "w") as f:
            f.write((previous + head + out)[-LOG_TAIL:])
        return rc, out

    def write(self):
        self.data["elapsed_s"] = time.monotonic() - self.started
        with atomic_write(self.out / "gpu_check.json", "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        with atomic_write(self.out / "gpu_check.md", "w") as f:
            f.write(render(self.data))

    def section(self, name, fn, allowed):
        print(f"[{time.monotonic() - self.started:5.0f} s] {name}: up to {allowed:.0f} s ...", file=sys.stderr,
              flush=True)
        t0 = time.monotonic()
        self.data["status"][name] = {"state": "running", "allowed": allowed, "seconds": 0}
        self.write()
        state = "failed"
        try:
            self.data[name] = fn(self, allowed)
            state = "ok" if self.data[name].get("ok") else "failed"
        except KeyboardInterrupt:
            state = "interrupted"
            raise
        except Exception as exc:  # noqa: BLE001  (reported; the next section still runs)
            self.data["section_errors"][name] = f"{type(exc).__name__}: {exc}"
        finally:
            self.data["status"][name] = {"state": state, "allowed": allowed, "seconds": time.monotonic() - t0}
            self.write()
        print(f"[{time.monotonic() - self.started:5.0f} s] {name}: {state}", file=sys.stderr, flush=True)


def _terminated(signum, frame):
    raise KeyboardInterrupt


FUNCTIONS = {"tests": section_tests, "cli": section_cli, "benchmark": section_benchmark, "fashion": section_fashion}


def _sections(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(SECTIONS)}, got {text!r}")
    return [s for s in SECTIONS if s in names]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "minidl-gpu-check"),
                   help="folder for the report (gpu_check.md, gpu_check.json, a log per section); default: "
                        "minidl-gpu-check in the temporary folder")
    p.add_argument("--data-dir", default=None, help="the folder of Fashion-MNIST's four .gz files "
                   "(default: $MINIDL_DATA, else searched); nothing is downloaded")
    p.add_argument("--budget", type=float, default=480, help="seconds for all sections together (default 480)")
    p.add_argument("--sections", type=_sections, default=list(SECTIONS),
                   help=f"the sections to run, of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--work", default=None, help="folder for run folders and checkpoints, kept (default: a "
                   "temporary folder, removed at the end); never inside --out")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing")
    p.add_argument("--torch-device", default="cuda", help=argparse.SUPPRESS)     # 'cpu' on the simulated CuPy
    p.add_argument("--worker", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--preset", default="paper", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--tf32", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    if os.environ.get(NESTED):
        print("gpu_check: error: started by a command of benchmarks.gpu_check itself (a test that runs it is "
              f"marked gpu?); it runs once per machine, not nested (unset {NESTED} to force it)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminated)        # end the sections' processes too, as on Ctrl-C
    try:
        ctx = Check(args, argv)
    except CheckError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    ctx.out.mkdir(parents=True, exist_ok=True)
    try:
        try:
            ctx.data["gpu"] = gpu_info(ctx)
        except Exception as exc:  # noqa: BLE001  (said in the report; the sections say the rest)
            ctx.data["section_errors"]["gpu"] = f"{type(exc).__name__}: {exc}"
        ctx.write()
        todo = list(args.sections)
        while todo:
            name = todo.pop(0)
            share = SHARES[name] / (SHARES[name] + sum(SHARES[s] for s in todo))
            ctx.section(name, FUNCTIONS[name], max(share * ctx.left() - (5 if not todo else 0), 1))
    except KeyboardInterrupt:
        ctx.write()
        print(f"gpu_check: interrupted; the report of what finished is in {ctx.out / 'gpu_check.md'}",
              file=sys.stderr)
        return 130
    finally:
        if ctx.own_work:
            shutil.rmtree(ctx.work, ignore_errors=True)
    ctx.write()
    print(render(ctx.data))
    print(f"report: {ctx.out / 'gpu_check.md'}", file=sys.stderr)
    ok = all(ctx.data["status"].get(s, {}).get("state") == "ok" for s in args.sections)
    return 0 if ok and not ctx.data["section_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
