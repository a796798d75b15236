"""CPU training-step benchmark: minidl on NumPy vs the same AlexNet in PyTorch.

    python -m benchmarks.step                                # paper:32, paper:128, mini:128; 3 runs each
    python -m benchmarks.step --configs mini:128 --repeats 5
    python -m benchmarks.step --quick --out /tmp/bench.md     # smoke test: mini:32, 1 run, 2 steps

One run on one machine measures:

1. NumPy's float32 matmul rate (an NxN @ NxN product, median of several):
   the roofline that minidl, which spends its FLOPs in BLAS GEMMs, can reach.
2. For every config ``preset:batch``, a full training step (forward, softmax
   cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4) of
   minidl's two-tower AlexNet and of its PyTorch twin (``build_torch_model``:
   one device, grouped convolutions for the towers), on the same random
   batch and the same number of threads. Each framework runs in its own
   worker process (``--worker minidl|torch``), which prints one JSON line
   with its per-step times and its peak RSS; the parent alternates the two
   frameworks ``--repeats`` times and takes medians.
3. A per-layer breakdown of minidl's step: an instrumented pass after the
   timed steps in the first minidl worker of each config, with a timer
   around every sub-layer's forward and backward (summed over towers), the
   tower exchanges, the loss and the SGD update.
4. The step's share of the roofline: step FLOPs / step time / matmul rate,
   with the rate measured again inside each minidl worker, just before and
   just after its timed steps: on a shared machine the rate drifts by tens of
   percent over minutes, and a share against a rate measured at another time
   would mostly report that drift.

The report (Markdown) is printed and written to ``--out`` (default
``docs/benchmarks.md``; a time-to-accuracy section there, written by
``benchmarks.time_to_accuracy``, is kept after it); ``--json`` saves the raw numbers. Every number in
the report is measured (or counted, like FLOPs and parameters) in that run.

minidl itself never imports torch; only the torch worker of this script does.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from minidl.atomic import atomic_write

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = "paper:32,paper:128,mini:128"
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def num_classes_for(preset):
    """The class count each preset is benchmarked with: 10 for mini (Fashion-MNIST), else 1000 (ImageNet)."""
    return 10 if preset == "mini" else 1000


def parse_configs(text):
    """'paper:32,mini:128' -> [('paper', 32), ('mini', 128)]."""
    from alexnet.configs import PRESETS

    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        preset, sep, batch = item.partition(":")
        if not sep or not batch.isdigit() or int(batch) < 1:
            raise ValueError(f"config {item!r}: expected PRESET:BATCH, e.g. paper:32")
        if preset not in PRESETS:
            raise ValueError(f"config {item!r}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        out.append((preset, int(batch)))
    if not out:
        raise ValueError("no configs given")
    return out


# --------------------------------------------------------------------------------------------------
# Machine, BLAS and threads
# --------------------------------------------------------------------------------------------------
def blas_threads():
    """How many threads NumPy's BLAS uses, and how that was found out (threadpoolctl, else the CPU count)."""
    from minidl.runtime import blas_info

    info = blas_info()
    if info is not None:
        return {"threads": info["threads"], "source": "threadpoolctl", "library": info["library"],
                "core": info["architecture"]}
    return {"threads": os.cpu_count() or 1, "source": "os.cpu_count() (BLAS thread count unknown)",
            "library": None, "core": None}


def machine_info():
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
        models = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        if models:
            info["cpu"] = models[0]
        cores = set()
        phys = core = None
        for ln in text.splitlines() + [""]:
            if ln.startswith("physical id"):
                phys = ln.split(":", 1)[1].strip()
            elif ln.startswith("core id"):
                core = ln.split(":", 1)[1].strip()
            elif not ln.strip():
                if core is not None:
                    cores.add((phys, core))
                phys = core = None
        if cores:
            info["physical_cores"] = len(cores)
    except OSError:
        pass
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                info["ram_gib"] = round(int(ln.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return info


def numpy_info():
    info = {"version": np.__version__}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cfg = np.show_config(mode="dicts")
        blas = (cfg or {}).get("Build Dependencies", {}).get("blas", {})
        info["blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration") if blas.get(k)}
    except (TypeError, AttributeError):  # NumPy < 1.26 has no mode='dicts'
        info["blas"] = {}
    return info


def matmul_rate(n, repeats, seed=0):
    """NumPy float32 ``(n, n) @ (n, n)``: median GFLOP/s over ``repeats`` products (after one warm-up)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"n": n, "repeats": repeats, "times_s": times, "median_s": t, "gflops": 2 * n ** 3 / t / 1e9}


def rss_mb():
    """Peak resident set size of this process so far, in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 2 ** 10


def make_batch(cfg, batch, num_classes, seed=0):
    """The random batch both frameworks train on: N(0, 1) images and uniform labels (float32, int64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cfg.in_channels, cfg.input_size, cfg.input_size), dtype=np.float32)
    y = rng.integers(0, num_classes, size=batch, dtype=np.int64)
    return x, y


def _timed_loop(step, steps, warmup, min_time):
    """Run ``warmup`` untimed steps, then at least ``steps`` timed ones and at least ``min_time`` seconds."""
    for _ in range(warmup):
        step()
    times, start = [], time.perf_counter()
    while len(times) < steps or (time.perf_counter() - start < min_time and len(times) < 50 * steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------------------------------
# The PyTorch twin
# --------------------------------------------------------------------------------------------------
def build_torch_model(preset, num_classes=None, device=None):
    """The preset's AlexNet as one PyTorch ``nn.Sequential`` on one device.

    Read from the same ``alexnet.configs`` preset as minidl's model, so the
    two stay in sync: a conv that reads its ``own`` tower is a grouped conv
    (``groups=towers``); conv1 (reads the ``input``, each tower computing
    half the maps) and the stages reading ``both`` towers are full convs /
    linears. That gives exactly the two-tower parameter count.

    Differences that do not change the work done: PyTorch's LRN runs over
    all channels, so its window crosses the tower boundary at the one pair
    of channels (C/2 - 1, C/2) where minidl's per-tower LRN clips; fine for
    timing. Initialisation is PyTorch's default (it does not affect speed).
    ``device='meta'`` builds it without allocating (to count parameters).
    """
    import torch.nn as nn

    from alexnet.configs import get_config
    from minidl.kernels import conv_out_size

    cfg = get_config(preset)
    num_classes = num_classes_for(cfg.name) if num_classes is None else int(num_classes)
    layers = []
    ch, size = cfg.in_channels, cfg.input_size
    for spec in cfg.convs:
        groups = cfg.towers if spec.reads == "own" else 1
        layers.append(nn.Conv2d(ch, spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                                groups=groups, device=device))
        size = conv_out_size(size, spec.kernel_size, spec.stride, spec.padding)
        for op in spec.after:
            if op == "relu":
                layers.append(nn.ReLU())
            elif op == "lrn":
                # over all C channels: crosses the tower boundary at one channel pair (see docstring)
                layers.append(nn.LocalResponseNorm(cfg.lrn["size"], alpha=cfg.lrn["alpha"],
                                                   beta=cfg.lrn["beta"], k=cfg.lrn["k"]))
            elif op == "pool":
                layers.append(nn.MaxPool2d(cfg.pool["kernel_size"], cfg.pool["stride"]))
                size = conv_out_size(size, cfg.pool["kernel_size"], cfg.pool["stride"], 0)
            else:
                raise ValueError(f"preset {cfg.name!r}: unknown op {op!r} after {spec.name}")
        ch = spec.out_channels
    layers.append(nn.Flatten())
    features = ch * size * size
    for spec in cfg.fcs:
        out = num_classes if spec.out_features is None else spec.out_features
        if spec.dropout_before:
            layers.append(nn.Dropout(spec.dropout_before))
        layers.append(nn.Linear(features, out, device=device))
        if spec.relu:
            layers.append(nn.ReLU())
        if spec.dropout_after:
            layers.append(nn.Dropout(spec.dropout_after))
        features = out
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------------
# Workers: one framework, one config, one process; print one JSON line
# --------------------------------------------------------------------------------------------------
def _worker_torch(args):
    import torch

    from alexnet.configs import get_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_config(args.preset)
    classes = num_classes_for(cfg.name)
    model = build_torch_model(cfg.name, classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    crit = torch.nn.CrossEntropyLoss()
    xn, yn = make_batch(cfg, args.batch, classes)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn)
    baseline = rss_mb()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()

    times = _timed_loop(step, args.steps, args.warmup, args.min_time)
    return {"framework": "torch", "times_s": times, "baseline_mb": baseline, "peak_mb": rss_mb(),
            "params": int(sum(p.numel() for p in model.parameters())),
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available())}


def _minidl_setup(args):
    from alexnet import build_model
    from minidl import SGD, SoftmaxCrossEntropy

    model = build_model(args.preset, num_classes=num_classes_for(args.preset)).train()
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    return model, opt, SoftmaxCrossEntropy()


def step_flops(model, batch):
    """Per conv/linear layer (summary_rows' names): forward and backward FLOPs of one step.

    Forward 2 * MACs * batch; backward twice that (dW and dx), except the
    lowest stage's layer, whose input gradient ``model.backward`` never
    computes (``need_input_grad`` is False): once.
    """
    lowest = model.stages[0].name
    out = {}
    for row in model.summary_rows():
        if row["macs"]:
            fwd = 2 * row["macs"] * batch
            once = row["name"] == lowest and not model.need_input_grad
            out[row["name"]] = (fwd, fwd if once else 2 * fwd)
    return out


def profile_minidl(model, opt, crit, x, y, steps):
    """Instrumented steps: time every sub-layer's forward/backward (summed over towers and steps),
    the tower exchanges, the loss and the SGD update; 'other' is the rest of the step."""
    fwd, bwd = {}, {}
    wrapped = []

    def wrap(obj, key):
        for attr, acc in (("forward", fwd), ("backward", bwd)):
            orig = getattr(obj, attr)
            acc.setdefault(key, 0.0)

            def timed(*a, _orig=orig, _acc=acc, **k):
                t0 = time.perf_counter()
                out = _orig(*a, **k)
                _acc[key] += time.perf_counter() - t0
                return out

            setattr(obj, attr, timed)   # an instance attribute: Block calls layer.forward(x)
            wrapped.append((obj, attr))

    order = []                          # (key, kind) in forward order
    for st in model.stages:
        if st.exchange is not None:
            key = f"{st.name}.exchange"
            wrap(st.exchange, key)
            order.append((key, "exchange"))
        for name in st.blocks[0].order:
            key = st.name if name in ("conv", "linear") else f"{st.name}.{name}"
            for block in st.blocks:
                wrap(getattr(block, name), key)
            order.append((key, name))
    loss_s = sgd_s = total_s = 0.0
    try:
        for _ in range(steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            t1 = time.perf_counter()
            logits = model.forward(x)
            t2 = time.perf_counter()
            crit.forward(logits, y)
            g = crit.backward()
            t3 = time.perf_counter()
            model.backward(g)
            t4 = time.perf_counter()
            opt.step()
            t5 = time.perf_counter()
            sgd_s += (t1 - t0) + (t5 - t4)
            loss_s += t3 - t2
            total_s += t5 - t0
    finally:
        for obj, attr in wrapped:
            delattr(obj, attr)
    rows = [{"name": key, "kind": kind, "forward_s": fwd[key] / steps, "backward_s": bwd[key] / steps}
            for key, kind in order]
    rows.append({"name": "loss (softmax cross-entropy)", "kind": "loss", "forward_s": loss_s / steps,
                 "backward_s": 0.0})
    rows.append({"name": "SGD update (zero_grad + step)", "kind": "optimizer", "forward_s": 0.0,
                 "backward_s": sgd_s / steps})
    measured = sum(r["forward_s"] + r["backward_s"] for r in rows)
    rows.append({"name": "other (input copies, gather, glue)", "kind": "other",
                 "forward_s": total_s / steps - measured, "backward_s": 0.0})
    flops = step_flops(model, x.shape[0])
    for r in rows:
        r["total_s"] = r["forward_s"] + r["backward_s"]
        r["share_pct"] = 100.0 * r["total_s"] / (total_s / steps)
        if r["name"] in flops:
            f, b = flops[r["name"]]
            r["forward_gflops"] = f / r["forward_s"] / 1e9 if r["forward_s"] > 0 else None
            r["backward_gflops"] = b / r["backward_s"] / 1e9 if r["backward_s"] > 0 else None
    return {"steps": steps, "step_s": total_s / steps, "rows": rows}


def _worker_minidl(args):
    from alexnet.configs import get_config
    from minidl.runtime import tower_threads_pay, tuned

    with tuned(keep_freed_memory=True):              # as alexnet.train: freed memory kept for the next step
        cfg = get_config(args.preset)
        model, opt, crit = _minidl_setup(args)
        x, y = make_batch(cfg, args.batch, num_classes_for(cfg.name))
        baseline = rss_mb()

        def step():
            opt.zero_grad()
            logits = model.forward(x)
            crit.forward(logits, y)
            model.backward(crit.backward())
            opt.step()

        # the roofline of this run: the matmul rate right before and right after its steps,
        # with the whole BLAS thread count
        mm_before = matmul_rate(args.matmul_size, args.matmul_repeats)
        # as alexnet.train: the towers in a thread each with a one-thread BLAS where that pays
        # (with this run's thread budget as the cores)
        threads = tower_threads_pay(len(model.devices), args.threads)
        with tuned(blas_threads=1 if threads else None) as tuning:
            model.tower_threads = tower_threads = threads and tuning["blas_threads"] == 1
            times = _timed_loop(step, args.steps, args.warmup, args.min_time)
            peak = rss_mb()
            model.tower_threads = False     # the per-layer profile below times the towers one after the other
        mm_after = matmul_rate(args.matmul_size, args.matmul_repeats)
        mm_times = mm_before["times_s"] + mm_after["times_s"]
        flops = step_flops(model, args.batch)
        out = {"framework": "minidl", "times_s": times, "baseline_mb": baseline, "peak_mb": peak,
               "params": model.num_parameters(), "blas": blas_threads(), "tower_threads": tower_threads,
               "step_flops": sum(f + b for f, b in flops.values()),
               "forward_flops": sum(f for f, _ in flops.values()),
               "matmul_gflops": 2 * args.matmul_size ** 3 / statistics.median(mm_times) / 1e9,
               "matmul_gflops_before_after": [mm_before["gflops"], mm_after["gflops"]]}
        if args.profile_steps:
            out["profile"] = profile_minidl(model, opt, crit, x, y, args.profile_steps)
        return out


def worker_main(args):
    if args.worker == "torch":
        res = _worker_torch(args)
    else:
        res = _worker_minidl(args)
        assert "torch" not in sys.modules, "the minidl worker must not import torch"
    res.update(preset=args.preset, batch=args.batch, warmup=args.warmup)
    print(json.dumps(res), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# Parent: run the workers, aggregate, report
# --------------------------------------------------------------------------------------------------
def run_worker(framework, preset, batch, args, threads, profile_steps=0):
    cmd = [sys.executable, "-m", "benchmarks.step", "--worker", framework, "--preset", preset,
           "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--min-time", str(args.min_time), "--threads", str(threads), "--profile-steps", str(profile_steps),
           "--matmul-size", str(args.matmul_size), "--matmul-repeats", str(args.matmul_repeats)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{framework} worker for {preset}:{batch} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def _aggregate(runs, batch):
    times = [t for r in runs for t in r["times_s"]]
    med = statistics.median(times)
    return {"runs": runs, "median_s": med, "run_medians_s": [statistics.median(r["times_s"]) for r in runs],
            "images_per_s": batch / med, "peak_mb": max(r["peak_mb"] for r in runs),
            "baseline_mb": max(r["baseline_mb"] for r in runs), "params": runs[0]["params"]}


def log_line(msg):
    """A progress line on standard error (standard output carries the report)."""
    print(msg, file=sys.stderr, flush=True)


def run_benchmark(args):
    configs = parse_configs(args.configs)
    have_torch = importlib.util.find_spec("torch") is not None
    blas = blas_threads()
    threads = blas["threads"]
    started = _dt.datetime.now(_dt.timezone.utc)
    log_line(f"matmul roofline: {args.matmul_size}x{args.matmul_size} float32, {args.matmul_repeats} repeats ...")
    mm = matmul_rate(args.matmul_size, args.matmul_repeats)
    log_line(f"  {mm['gflops']:.1f} GFLOP/s")
    results = []
    torch_meta = None
    for preset, batch in configs:
        label = f"{preset}:{batch}"
        runs = {"minidl": [], "torch": []}
        for r in range(args.repeats):
            order = ["minidl", "torch"] if r % 2 == 0 else ["torch", "minidl"]
            for fw in order:
                if fw == "torch" and not have_torch:
                    continue
                prof = args.profile_steps if (fw == "minidl" and r == 0) else 0
                res = run_worker(fw, preset, batch, args, threads, prof)
                runs[fw].append(res)
                log_line(f"[{label}] run {r + 1}/{args.repeats} {fw:>6}: "
                     f"median {statistics.median(res['times_s']):.4f} s/step over {len(res['times_s'])} steps, "
                     f"peak {res['peak_mb']:.0f} MB")
                if fw == "torch":
                    torch_meta = {k: res[k] for k in ("torch_version", "torch_threads", "mkldnn")}
        entry = {"label": label, "preset": preset, "batch": batch, "num_classes": num_classes_for(preset)}
        entry["minidl"] = _aggregate(runs["minidl"], batch)
        m = entry["minidl"]
        entry["step_flops"] = runs["minidl"][0]["step_flops"]
        entry["minidl_gflops"] = entry["step_flops"] / m["median_s"] / 1e9
        # each run against the matmul rate measured in the same process around its steps
        entry["run_roofline_gflops"] = [r["matmul_gflops"] for r in runs["minidl"]]
        entry["run_roofline_shares"] = [entry["step_flops"] / statistics.median(r["times_s"]) / r["matmul_gflops"] / 1e9
                                        for r in runs["minidl"]]
        entry["roofline_share"] = statistics.median(entry["run_roofline_shares"])
        entry["roofline_share_vs_start"] = entry["minidl_gflops"] / mm["gflops"]
        entry["profile"] = runs["minidl"][0].get("profile")
        if runs["torch"]:
            entry["torch"] = _aggregate(runs["torch"], batch)
            entry["ratio"] = m["median_s"] / entry["torch"]["median_s"]
            entry["torch_gflops"] = entry["step_flops"] / entry["torch"]["median_s"] / 1e9
        results.append(entry)
    return {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.step", *args.argv]),
        "quick": args.quick,
        "settings": {"configs": args.configs, "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup,
                     "min_time_s": args.min_time, "profile_steps": args.profile_steps,
                     "matmul_size": args.matmul_size, "matmul_repeats": args.matmul_repeats,
                     "sgd": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}},
        "machine": machine_info(),
        "python": platform.python_version(),
        "numpy": numpy_info(),
        "blas_threads": blas,
        "torch": torch_meta if have_torch else None,
        "threads": threads,
        "matmul": mm,
        "results": results,
    }


def fmt_or(v, spec, none="n/a"):
    """``v`` formatted with ``spec``, or ``none`` where there is no value."""
    return none if v is None else format(v, spec)


def machine_rows(mach, python):
    """The CPU, RAM and Python rows of a report's machine table (``machine_info()``'s facts)."""
    cores = f"{mach.get('logical_cpus')} logical CPUs"
    if mach.get("physical_cores"):
        cores += f" ({mach['physical_cores']} physical cores)"
    if mach.get("usable_cpus") != mach.get("logical_cpus"):
        cores += f", {mach.get('usable_cpus')} usable by this process"
    return [f"| CPU | {mach.get('cpu')}, {cores} |", f"| RAM | {fmt_or(mach.get('ram_gib'), '.1f')} GiB |",
            f"| Python | {python} |"]


def blas_text(npi, blas, configuration=False):
    """NumPy's BLAS in words (``numpy_info()`` and ``blas_threads()``), with OpenBLAS's build line if asked."""
    b = npi.get("blas", {})
    text = " ".join(str(b[k]) for k in ("name", "version") if b.get(k)) or "unknown"
    if configuration and b.get("openblas configuration"):
        text += f" (`{b['openblas configuration']}`)"
    if blas.get("core"):
        text += f", running core: {blas['core']}"
    return text


def render_report(data):
    mach, npi, blas, mm, tmeta = data["machine"], data["numpy"], data["blas_threads"], data["matmul"], data["torch"]
    s = data["settings"]
    L = ["# Training-step benchmark: minidl (NumPy) vs PyTorch, CPU", ""]
    if data["quick"]:
        L += ["> **Smoke run (`--quick`)**: tiny settings, one run of two steps. Not a measurement to quote.", ""]
    L += [f"Generated {data['started_utc']} by `{data['command']}`.", "", "## Machine and software", "",
          "| | |", "|---|---|"]
    L += machine_rows(mach, data["python"])
    L.append(f"| NumPy | {npi['version']}; BLAS: {blas_text(npi, blas, configuration=True)} |")
    tt = any(r.get("tower_threads") for e in data["results"] for r in e["minidl"]["runs"])
    L.append(f"| Threads | {data['threads']} for both frameworks: NumPy's BLAS thread count, from {blas['source']}; "
             f"PyTorch `set_num_threads({data['threads']})`"
             + ("; minidl runs its two towers in a thread each with a one-thread BLAS, as `alexnet.train` "
                "does on two cores" if tt else "") + " |")
    if tmeta:
        L.append(f"| PyTorch | {tmeta['torch_version']}, {tmeta['torch_threads']} threads, "
                 f"oneDNN (mkldnn) {'available' if tmeta['mkldnn'] else 'not available'} |")
    else:
        L.append("| PyTorch | not installed: no PyTorch numbers in this run |")
    L.append(f"| NumPy float32 matmul (roofline) | {mm['n']}x{mm['n']} @ {mm['n']}x{mm['n']}, median of "
             f"{mm['repeats']}: {mm['gflops']:.1f} GFLOP/s at the start; each minidl run measures it again "
             "(details table) |")
    L += ["", "## Summary", "",
          f"A training step is forward, softmax cross-entropy, backward and SGD (momentum {s['sgd']['momentum']}, "
          f"weight decay {s['sgd']['weight_decay']}) on one random batch; `preset:batch`, 1000 classes "
          "(mini: 10). Each framework runs in its own process; the two alternate "
          f"{s['repeats']} time(s) per config, each run doing {s['warmup']} warm-up step(s) and then at least "
          f"{s['steps']} timed steps (and at least {s['min_time_s']:g} s). s/step is the median over all timed "
          "steps of all runs. **ratio = minidl / torch: below 1 means minidl is faster.** Roofline share = "
          "minidl's step FLOPs / its step time / the matmul rate, per minidl run with the rate that run measured "
          f"({s['matmul_repeats']} products before its steps and {s['matmul_repeats']} after, median; on a shared "
          "machine the rate drifts between runs), then the median over runs. Peak MB: the worker's peak RSS "
          "(`ru_maxrss`) after its steps, process start-up and imports included.", "",
          "| config | minidl s/step | torch s/step | ratio | minidl img/s | torch img/s | roofline share "
          "| minidl peak MB | torch peak MB |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in data["results"]:
        m, t = e["minidl"], e.get("torch")
        L.append(f"| {e['label']} | {m['median_s']:.4f} | {fmt_or(t and t['median_s'], '.4f')} "
                 f"| {fmt_or(e.get('ratio'), '.2f')} | {m['images_per_s']:.1f} | {fmt_or(t and t['images_per_s'], '.1f')} "
                 f"| {100 * e['roofline_share']:.1f}% | {m['peak_mb']:.0f} | {fmt_or(t and t['peak_mb'], '.0f')} |")
    L += ["", "Details: FLOPs per step (forward 2 x MACs x batch; backward twice that, except conv1, whose input "
          "gradient is never computed: once), achieved rates, per-run medians, the matmul rate each minidl run "
          "measured and its roofline share, memory before the steps (model, optimizer and batch built), and "
          "parameter counts of the two twins.", "",
          "| config | GFLOP/step | minidl GFLOP/s | torch GFLOP/s | minidl run medians (s) | torch run medians (s) "
          "| matmul GFLOP/s per minidl run | share per minidl run "
          "| minidl MB baseline -> peak | torch MB baseline -> peak | params minidl / torch |",
          "|---|---:|---:|---:|---|---|---|---|---|---|---|"]
    for e in data["results"]:
        m, t = e["minidl"], e.get("torch")
        runs_m = ", ".join(f"{v:.4f}" for v in m["run_medians_s"])
        runs_t = ", ".join(f"{v:.4f}" for v in t["run_medians_s"]) if t else "n/a"
        mem_t = f"{t['baseline_mb']:.0f} -> {t['peak_mb']:.0f}" if t else "n/a"
        L.append(f"| {e['label']} | {e['step_flops'] / 1e9:.2f} | {e['minidl_gflops']:.1f} "
                 f"| {fmt_or(e.get('torch_gflops'), '.1f')} | {runs_m} | {runs_t} "
                 f"| {', '.join(f'{v:.1f}' for v in e['run_roofline_gflops'])} "
                 f"| {', '.join(f'{100 * v:.1f}%' for v in e['run_roofline_shares'])} "
                 f"| {m['baseline_mb']:.0f} -> {m['peak_mb']:.0f} | {mem_t} "
                 f"| {m['params']:,} / {format(t['params'], ',') if t else 'n/a'} |")
    L += ["", "## Where minidl's step goes", "",
          "An instrumented pass after the timed steps (first minidl run of each config), with the towers run "
          "one after the other and the whole BLAS thread count: a timer around every "
          "sub-layer's `forward` and `backward`, summed over the two towers; the tower exchanges (concatenation "
          "for conv3 and the FC layers, and the split of their gradients); the loss; the SGD update. "
          "'other' is the rest of the step (copying the input to each tower, gathering the logits, Python glue). "
          "Share is of the instrumented step. GFLOP/s for conv and linear layers only "
          "(forward 2 x MACs x batch, backward twice that, conv1 once)."]
    for e in data["results"]:
        p = e.get("profile")
        if not p:
            continue
        L += ["", f"### {e['label']}", "",
              f"Instrumented step: {p['step_s']:.4f} s (mean of {p['steps']}); the timed median was "
              f"{e['minidl']['median_s']:.4f} s.", "",
              "| layer | forward ms | backward ms | total ms | share | fwd GFLOP/s | bwd GFLOP/s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for r in p["rows"]:
            dash = r["kind"] in ("loss", "optimizer", "other")
            fw = "" if dash and r["kind"] == "optimizer" else f"{1e3 * r['forward_s']:.2f}"
            bw = "" if dash and r["kind"] != "optimizer" else f"{1e3 * r['backward_s']:.2f}"
            L.append(f"| {r['name']} | {fw} | {bw} | {1e3 * r['total_s']:.2f} | {r['share_pct']:.1f}% "
                     f"| {fmt_or(r.get('forward_gflops'), '.1f') if 'forward_gflops' in r else ''} "
                     f"| {fmt_or(r.get('backward_gflops'), '.1f') if 'backward_gflops' in r else ''} |")
        tot = sum(r["share_pct"] for r in p["rows"])
        L.append(f"| **total** | | | {1e3 * p['step_s']:.2f} | {tot:.1f}% "
                 f"| {e['step_flops'] / p['step_s'] / 1e9:.1f} (whole step) | |")
    L += ["", "PyTorch twin: the same preset built as one `nn.Sequential` (grouped convs for conv2/4/5, "
          "`nn.LocalResponseNorm` over all channels, which crosses the tower boundary at one channel pair where "
          "minidl's per-tower LRN does not: the same work). Source: `benchmarks/step.py`.", ""]
    return "\n".join(L)


def write_report(path, report):
    """Write ``report`` to ``path`` whole, but keep the time-to-accuracy section of a file already there
    (``benchmarks.time_to_accuracy`` writes it between its markers), after the new report."""
    from benchmarks.time_to_accuracy import split_section, with_section  # here: that module imports this one

    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    _, section = split_section(old)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:          # a killed run leaves the old report, not half a new one
        f.write(report if section is None else with_section(report, section))


def write_json(path, data):
    """Save a benchmark's raw results (atomically: a killed run leaves the previous file whole)."""
    with atomic_write(path, "w") as f:             # makes the folder if needed
        json.dump(data, f, indent=1)
    log_line(f"raw results written to {path}")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.step", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"PRESET:BATCH,... (default {DEFAULT_CONFIGS})")
    p.add_argument("--repeats", type=int, default=3, help="runs per framework and config, alternating (default 3)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per run, at least (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per run first (default 1)")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="keep stepping until a run has timed at least this many seconds (default 2)")
    p.add_argument("--profile-steps", type=int, default=2,
                   help="instrumented minidl steps for the per-layer breakdown (default 2; 0: none)")
    p.add_argument("--matmul-size", type=int, default=2048, help="N of the NxN roofline matmul (default 2048)")
    p.add_argument("--matmul-repeats", type=int, default=7, help="roofline matmul repeats (default 7)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown report (default docs/benchmarks.md)")
    p.add_argument("--json", default=None, help="also save the raw results as JSON here")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: mini:32, 1 repeat, 2 steps, small matmul (overrides the other settings)")
    # worker mode (internal)
    p.add_argument("--worker", choices=("minidl", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.configs, args.repeats, args.steps, args.warmup, args.min_time = "mini:32", 1, 2, 1, 0.0
        args.profile_steps, args.matmul_size, args.matmul_repeats = 1, 512, 3
    for name in ("repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.profile_steps < 0 or args.min_time < 0:
        parser.error("--warmup, --profile-steps and --min-time must be >= 0")
    try:
        parse_configs(args.configs)
    except ValueError as exc:
        parser.error(str(exc))
    if importlib.util.find_spec("torch") is None:
        log_line("warning: PyTorch is not installed (pip install torch==2.13.0); reporting minidl only")
    data = run_benchmark(args)
    report = render_report(data)
    print(report)
    out = Path(args.out)
    write_report(out, report)
    log_line(f"report written to {out}")
    if args.json:
        write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
