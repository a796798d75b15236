"""Time to accuracy on the CPU: the mini AlexNet trained on Fashion-MNIST by minidl and by PyTorch.

    python -m benchmarks.time_to_accuracy                     # the preset's recipe, 1 run per framework
    python -m benchmarks.time_to_accuracy --repeats 3         # minidl, torch, minidl, torch, ...
    python -m benchmarks.time_to_accuracy --quick --out /tmp/tta.md   # smoke test: numbers not meaningful

Both frameworks train the same network (preset ``mini``: 1x28x28, two
towers; PyTorch runs ``benchmarks.step.build_torch_model``, given minidl's
initial weights) with the same recipe (``alexnet.settings.TrainConfig``
resolved for ``mini``, the flags override it for both alike) on the same
batches: each worker builds the run's data with the project's own code
(``alexnet.dataspec``: the 5,000 class-balanced validation images, the
loader's shuffled order, ``TrainTransform``'s flips and normalisation,
seeded per batch as ``alexnet.trainer.Trainer.train_step`` seeds it), so
the two see identical NumPy arrays in identical order; the torch worker
wraps them with ``torch.from_numpy``.

The clock: training wall time only, from the first step. At fixed points
(``--eval-points-per-epoch``, default every quarter epoch) the clock stops,
the validation split is evaluated (timed apart), and the clock goes on.
Time to X% = the training time at the first evaluation point whose
validation top-1 is at least X%. The test split is evaluated once at the
end and only reported.

Each run is its own process (``--worker minidl|torch``, one JSON line on
stdout), so its peak RSS is its own; the parent alternates minidl and torch
``--repeats`` times and writes a Markdown report as the time-to-accuracy
section of ``--out`` (default ``docs/benchmarks.md``, shared with
``benchmarks.step``: each keeps the other's part). minidl never imports
torch; only the torch worker does.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.step import (blas_text, blas_threads, build_torch_model, fmt_or, log_line, machine_info, machine_rows,
                             numpy_info, rss_mb, write_json)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
PRESET = "mini"
TARGETS = (90, 91)                  # validation top-1, percent
GOAL = (91, 0.7)                    # minidl's time to 91% at most 0.7x PyTorch's
TORCH_HINT = "pip install torch==2.13.0"
# --quick: a smoke test of the whole path in seconds
QUICK = {"train": 640, "val": 500, "test": 200, "batch_size": 32, "epochs": 1, "eval_points": 2}
START = "<!-- time_to_accuracy: start -->"
END = "<!-- time_to_accuracy: end -->"


# --------------------------------------------------------------------------------------------------
# The recipe and the data, the same in both workers
# --------------------------------------------------------------------------------------------------
def resolve_recipe(epochs=None, batch_size=None, lr=None, lr_step=None):
    """The preset's training recipe (``TrainConfig(...).resolved()``), with any of these overriding it.

    Returns a dict: epochs, batch_size, lr, lr_step, momentum, weight_decay, seed, init. A setting
    ``alexnet.train`` would refuse raises its ConfigError (a UserError).
    """
    from alexnet.settings import ConfigError, TrainConfig

    config = TrainConfig(preset=PRESET, epochs=epochs, batch_size=batch_size, lr=lr, lr_step=lr_step)
    config = config.resolved().check()
    if config.lr_schedule != "step":       # the clock must not depend on a decision taken on the validation split
        raise ConfigError(f"preset {PRESET!r} trains with --lr-schedule {config.lr_schedule}; this benchmark "
                          "runs the step schedule only")
    return {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr, "lr_step": config.lr_step,
            "momentum": config.momentum, "weight_decay": config.weight_decay, "seed": config.seed,
            "init": config.init or config.network().init}


class RunData:
    """The run's data, built as ``alexnet.train`` builds it; both workers make one and get the same arrays.

    Training images: Fashion-MNIST's 60,000 less the 5,000 validation images (``open_splits``: class-balanced,
    the same for every seed), shuffled per epoch by the project's ``DataLoader`` (order a function of
    (seed, epoch), last partial batch dropped); each batch augmented by the project's ``TrainTransform``
    (random horizontal flips, then the data spec's mean and std) with the generator ``[seed, epoch, batch]``,
    as ``Trainer.train_step`` draws it. Evaluation: ``EvalTransform`` (the centre crop, the whole 28x28
    image here; mean and std). ``quick``: 640 training images, the first 500 validation and 200 test.
    """

    def __init__(self, data_dir, batch_size, seed, quick=False):
        from alexnet.configs import get_config
        from alexnet.dataspec import describe_data, make_transforms, open_splits
        from minidl.data import DataLoader

        self.spec = describe_data("fashion-mnist", data_dir, PRESET)
        splits = open_splits(self.spec, None, QUICK["train"] if quick else None, seed)
        n_train = len(splits.train) if splits.train_indices is None else len(splits.train_indices)
        if batch_size > n_train:
            from alexnet.cli import UserError

            raise UserError(f"--batch-size {batch_size} is larger than the training set ({n_train} images)")
        self.seed, self.batch_size = seed, batch_size
        self.loader = DataLoader(splits.train, batch_size, shuffle=True, seed=seed, drop_last=True,
                                 indices=splits.train_indices, prefetch=2)
        self.train_tf, self.eval_tf = make_transforms(self.spec, get_config(PRESET).input_size)
        val_idx = splits.val_indices[:QUICK["val"]] if quick else splits.val_indices
        test_idx = np.arange(QUICK["test"] if quick else len(splits.test))
        self.splits = {"val": (splits.val, val_idx), "test": (splits.test, test_idx)}
        self.eval_batch = max(batch_size, 100)          # as Trainer.run_eval

    @property
    def num_train(self):
        return self.loader.num_examples

    def sizes(self):
        """Images per split: {'train', 'val', 'test'}."""
        return {"train": self.num_train, **{k: len(idx) for k, (_, idx) in self.splits.items()}}

    def train_batches(self, epoch):
        """Epoch ``epoch``'s training batches: (x float32 (B, 1, 28, 28), y int64 (B,)), augmented."""
        for k, (images, labels) in enumerate(self.loader.batches(epoch)):
            rng = np.random.default_rng([self.seed, epoch, k])      # Trainer.train_step's generator
            yield self.train_tf(images, rng), labels

    def eval_batches(self, split):
        """The ``split`` ('val' or 'test') in order: (x float32, y int64) batches, the eval transform applied."""
        from minidl.data import DataLoader

        dataset, idx = self.splits[split]
        loader = DataLoader(dataset, self.eval_batch, shuffle=False, indices=idx, prefetch=2)
        for images, labels in loader.batches(0):
            yield self.eval_tf(images), labels


def eval_schedule(batches_per_epoch, points):
    """After which batches of an epoch (1-based counts) to evaluate: ``points`` evenly spaced, the last at its end."""
    return sorted({max(1, round(batches_per_epoch * j / points)) for j in range(1, points + 1)})


def top1(logits_fn, batches):
    """(correct, images) of ``logits_fn(x)``'s arg-max over ``batches``."""
    correct = seen = 0
    for x, y in batches:
        correct += int((np.asarray(logits_fn(x)).argmax(axis=1) == y).sum())
        seen += len(y)
    return correct, seen


# --------------------------------------------------------------------------------------------------
# The two frameworks: one step, the logits, the optimizer's learning rate
# --------------------------------------------------------------------------------------------------
class MinidlRunner:
    """minidl as ``alexnet.train`` runs it: the Trainer's step (``Trainer.train_step``), SGD, He init."""

    name = "minidl"

    def __init__(self, recipe, num_classes):
        from alexnet import build_model
        from minidl import SGD, SoftmaxCrossEntropy

        self.model = build_model(PRESET, num_classes=num_classes, init=recipe["init"], seed=recipe["seed"])
        self.optim = SGD(self.model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                         weight_decay=recipe["weight_decay"])
        self.loss_fn = SoftmaxCrossEntropy()

    def step(self, x, y):
        """One training step; the batch's mean loss (a float)."""
        self.model.train()
        logits = self.model.forward(x)
        loss = self.loss_fn.compute(logits, y)
        self.optim.zero_grad()
        self.model.backward(self.loss_fn.backward())
        self.optim.step()                   # v = m v - wd lr w - lr g; w += v
        return float(loss)

    def logits(self, x):
        self.model.eval()
        return self.model.forward(x)

    def num_parameters(self):
        return self.model.num_parameters()


class TorchSGD:
    """minidl's SGD in PyTorch: ``v <- m*v - wd*lr*w - lr*g; w <- w + v`` on every parameter, biases included.

    ``torch.optim.SGD`` keeps ``v <- m*v + (g + wd*w); w <- w - lr*v``: the same steps while the rate is
    constant (its v is minidl's divided by -lr), but when the schedule divides the rate by 10 its whole
    velocity is applied at the new rate at once, where minidl's still carries the momentum gathered at the
    old rate. So this writes minidl's rule out (``minidl/optim.py``, ``kernels.momentum_update``). ``lr`` is
    an attribute, as on minidl's SGD, so ``minidl.StepLR`` schedules either.
    """

    def __init__(self, params, lr, momentum, weight_decay):
        import torch

        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        import torch

        with torch.no_grad():
            for p, v in zip(self.params, self.velocity):
                if p.grad is None:
                    continue
                v.mul_(self.momentum)
                if self.weight_decay:
                    v.add_(p, alpha=-self.weight_decay * self.lr)
                v.add_(p.grad, alpha=-self.lr)
                p.add_(v)


def copy_weights(minidl_model, torch_model):
    """Give the PyTorch twin minidl's weights: per conv/linear stage, the towers' weights and biases side by
    side along the output axis (grouped convs take the towers as groups, in order; the tower exchange
    concatenates tower 0's maps first, as the twin's channels are)."""
    import torch

    from minidl.backend import asnumpy

    layers = [m for m in torch_model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    if len(layers) != len(minidl_model.stages):
        raise ValueError(f"the twin has {len(layers)} conv/linear layers, minidl {len(minidl_model.stages)} stages")
    with torch.no_grad():
        for stage, layer in zip(minidl_model.stages, layers):
            for name in ("weight", "bias"):
                value = np.concatenate([asnumpy(getattr(b.main, name).data) for b in stage.blocks], axis=0)
                target = getattr(layer, name)
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(f"{stage.name}.{name}: minidl {value.shape}, twin {tuple(target.shape)}")
                target.copy_(torch.from_numpy(value))


class TorchRunner:
    """The PyTorch twin (``build_torch_model``), starting from minidl's initial weights, ``TorchSGD``."""

    name = "torch"

    def __init__(self, recipe, num_classes):
        import torch

        from alexnet import build_model

        self.torch = torch
        self.model = build_torch_model(PRESET, num_classes)
        # the same seed gives minidl's first weights (He init); built here and copied, then dropped
        copy_weights(build_model(PRESET, num_classes=num_classes, init=recipe["init"], seed=recipe["seed"]),
                     self.model)
        torch.manual_seed(recipe["seed"])               # the dropout masks (PyTorch's own generator)
        self.optim = TorchSGD(self.model.parameters(), recipe["lr"], recipe["momentum"], recipe["weight_decay"])
        self.loss_fn = torch.nn.CrossEntropyLoss()      # the mean over the batch, as minidl's

    def step(self, x, y):
        self.model.train()
        loss = self.loss_fn(self.model(self.torch.from_numpy(x)), self.torch.from_numpy(y))
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        return loss.item()

    def logits(self, x):
        self.model.eval()
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()

    def num_parameters(self):
        return int(sum(p.numel() for p in self.model.parameters()))


# --------------------------------------------------------------------------------------------------
# The clock: one training run, evaluated at fixed points with the clock stopped
# --------------------------------------------------------------------------------------------------
def train_and_evaluate(runner, data, recipe, eval_points, log=lambda msg: None):
    """Train ``runner`` on ``data`` with ``recipe``; the validation top-1 at each evaluation point.

    The clock (``time.perf_counter``) runs from just before the first batch is fetched; it is stopped
    for each evaluation, which is timed apart. Training time therefore counts fetching and augmenting
    the batches, forward, loss, backward and update, identical code outside the framework in both.
    The rate is divided by 10 every ``lr_step`` epochs (``minidl.StepLR``, as the Trainer does).
    """
    from minidl import StepLR

    sched = StepLR(runner.optim, recipe["lr_step"])
    n_batches = len(data.loader)
    eval_after = set(eval_schedule(n_batches, eval_points))
    points, train_s, eval_s, images, step = [], 0.0, 0.0, 0, 0
    losses, diverged = [], None
    for epoch in range(recipe["epochs"]):
        lr = runner.optim.lr
        t0 = time.perf_counter()
        for k, (x, y) in enumerate(data.train_batches(epoch)):
            loss = runner.step(x, y)
            step, images = step + 1, images + len(y)
            losses.append(loss)
            if not math.isfinite(loss):
                diverged = step
            if k + 1 in eval_after or diverged:
                train_s += time.perf_counter() - t0
                e0 = time.perf_counter()
                correct, seen = top1(runner.logits, data.eval_batches("val"))
                took = time.perf_counter() - e0
                eval_s += took
                points.append({"epoch": epoch + (k + 1) / n_batches, "step": step, "images": images,
                               "train_s": train_s, "val_correct": correct, "val_images": seen,
                               "val_top1": correct / seen, "eval_s": took, "lr": lr,
                               "train_loss": float(np.mean(losses))})
                losses = []
                log(f"epoch {points[-1]['epoch']:.2f}: val top-1 {100 * correct / seen:.2f}%, "
                    f"training {train_s:.1f} s, loss {points[-1]['train_loss']:.4f}")
                if diverged:
                    break
                t0 = time.perf_counter()
        if diverged:
            break
        sched.step()
    e0 = time.perf_counter()
    correct, seen = top1(runner.logits, data.eval_batches("test"))
    return {"points": points, "train_s": train_s, "eval_s": eval_s, "steps": step, "images": images,
            "images_per_s": images / train_s if train_s > 0 else None, "diverged_at_step": diverged,
            "final_val_top1": points[-1]["val_top1"], "test_correct": correct, "test_images": seen,
            "test_top1": correct / seen, "test_eval_s": time.perf_counter() - e0}


def time_to(points, percent):
    """The training time of the first point with validation top-1 >= ``percent``% (integers: no rounding
    doubt at the threshold), and its epoch; None if no point reached it."""
    for p in points:
        if 100 * p["val_correct"] >= percent * p["val_images"]:
            return {"train_s": p["train_s"], "epoch": p["epoch"]}
    return None


# --------------------------------------------------------------------------------------------------
# Workers: one framework, one run, one process; print one JSON line
# --------------------------------------------------------------------------------------------------
def _worker(args):
    """Build the framework, the data and the model, train, and return the run's record."""
    from minidl.runtime import tower_threads_pay, tuned, usable_cores

    cores = args.threads or usable_cores()
    info = {"framework": args.worker, "run": args.run, "usable_cores": usable_cores(), "threads": cores}
    if args.worker == "torch":
        import torch

        torch.set_num_threads(cores)
        info.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                    torch_interop_threads=torch.get_num_interop_threads(),
                    mkldnn=bool(torch.backends.mkldnn.is_available()))
    import minidl

    info["minidl_version"] = minidl.__version__
    recipe = resolve_recipe(args.epochs, args.batch_size, args.lr, args.lr_step)
    # minidl as alexnet.train runs it on this machine: the towers in a thread each with a one-thread BLAS
    # where that pays (else the BLAS as it is, or --threads), and freed memory kept for the next step;
    # PyTorch as it comes, with set_num_threads
    towers = args.worker == "minidl" and tower_threads_pay(2, cores)
    blas = 1 if towers else (args.threads if args.worker == "minidl" else None)
    with tuned(blas_threads=blas, keep_freed_memory=args.worker == "minidl") as tuning:
        t = time.perf_counter()
        data = RunData(args.data_dir, recipe["batch_size"], recipe["seed"], quick=args.quick)
        data_s = time.perf_counter() - t
        t = time.perf_counter()
        runner = (MinidlRunner if args.worker == "minidl" else TorchRunner)(recipe, data.spec.num_classes)
        if args.worker == "minidl":
            runner.model.tower_threads = towers and tuning["blas_threads"] == 1
            info.update(tower_threads=runner.model.tower_threads, blas=blas_threads(), tuning=tuning)
        model_s = time.perf_counter() - t
        total_s = time.time() - args.t0 if args.t0 else data_s + model_s
        try:
            result = train_and_evaluate(runner, data, recipe, args.eval_points_per_epoch,
                                        log=lambda m: print(f"[{args.worker} run {args.run}] {m}", file=sys.stderr,
                                                            flush=True))
        finally:
            if args.worker == "minidl":
                runner.model.tower_threads = False      # ends the tower threads
        result["peak_mb"] = rss_mb()
    result.update(info, recipe=recipe, data=data.sizes(), params=runner.num_parameters(),
                  startup={"total_s": total_s, "data_s": data_s, "model_s": model_s,
                           "imports_s": max(0.0, total_s - data_s - model_s)})
    return result


def worker_main(args):
    res = _worker(args)
    if args.worker == "minidl":
        assert "torch" not in sys.modules, "the minidl worker must not import torch"
    print(json.dumps(res), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# Parent: run the workers, report
# --------------------------------------------------------------------------------------------------
def run_worker(framework, run, args, recipe):
    """One worker process; its record (its progress lines go to this process's standard error)."""
    from alexnet.cli import UserError

    cmd = [sys.executable, "-m", "benchmarks.time_to_accuracy", "--worker", framework, "--run", str(run),
           "--epochs", str(recipe["epochs"]), "--batch-size", str(recipe["batch_size"]), "--lr", repr(recipe["lr"]),
           "--lr-step", str(recipe["lr_step"]), "--eval-points-per-epoch", str(args.eval_points_per_epoch)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd += ["--t0", repr(time.time())]              # start-up counts from here
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise UserError(f"the {framework} worker of run {run} failed (exit {proc.returncode}); its error is above")
    return json.loads(lines[-1])


def _median(values):
    """The median, with None (not reached) counted as infinitely slow; None if that is the median."""
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def summarise(runs):
    """Per framework: medians over its runs (time to each target, accuracies, throughput, memory)."""
    out = {}
    for fw in ("minidl", "torch"):
        mine = [r for r in runs if r["framework"] == fw]
        if not mine:
            continue
        s = {"runs": len(mine)}
        for pct in TARGETS:
            times = [r["time_to"][str(pct)] and r["time_to"][str(pct)]["train_s"] for r in mine]
            s[f"time_to_{pct}_s"] = _median(times)
            s[f"reached_{pct}"] = sum(t is not None for t in times)
        for key in ("final_val_top1", "test_top1", "images_per_s", "peak_mb", "train_s", "eval_s"):
            s[key] = statistics.median(r[key] for r in mine if r[key] is not None)
        s["startup_s"] = statistics.median(r["startup"]["total_s"] for r in mine)
        out[fw] = s
    pct, goal = GOAL
    m, t = out["minidl"][f"time_to_{pct}_s"], out["torch"][f"time_to_{pct}_s"]
    if m is not None and t is not None:
        ratio = m / t
        verdict = (f"{'met' if ratio <= goal else 'not met'}: minidl took {ratio:.2f}x PyTorch's time to {pct}% "
                   f"(goal: at most {goal}x)")
    else:
        ratio = None
        verdict = {(True, True): f"cannot tell: neither framework reached {pct}%",
                   (True, False): f"not met: minidl did not reach {pct}% (PyTorch did)",
                   (False, True): f"met: minidl reached {pct}% and PyTorch did not"}[(m is None, t is None)]
    return {"frameworks": out, "ratio": ratio, "verdict": verdict}


def _git_commit():
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None


def run_benchmark(args, recipe):
    """Alternate the workers (minidl run 1, torch run 1, minidl run 2, ...); the raw results."""
    import minidl

    started = _dt.datetime.now(_dt.timezone.utc)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None and load > 0.5:
        log_line(f"warning: the load average is {load:.1f}: other processes are using the CPU, which slows both "
             "frameworks (PyTorch's waiting OpenMP threads most) and makes the times worth little")
    runs = []
    for r in range(1, args.repeats + 1):
        for fw in ("minidl", "torch"):
            log_line(f"run {r}/{args.repeats}: {fw} ...")
            res = run_worker(fw, r, args, recipe)
            res["time_to"] = {str(pct): time_to(res["points"], pct) for pct in TARGETS}
            runs.append(res)
            reached = ", ".join(f"{pct}%: {_secs(res['time_to'][str(pct)])}" for pct in TARGETS)
            log_line(f"run {r}/{args.repeats}: {fw}: {reached}; final val top-1 {100 * res['final_val_top1']:.2f}%")
    if load is not None:
        load = [load, os.getloadavg()[0]]
    torch_run = next(r for r in runs if r["framework"] == "torch")
    return {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.time_to_accuracy", *args.argv]),
        "quick": args.quick,
        "settings": {"repeats": args.repeats, "eval_points_per_epoch": args.eval_points_per_epoch,
                     "threads": args.threads, "load_average": load,
                     "data_dir": args.data_dir, "targets_pct": list(TARGETS), "goal": list(GOAL)},
        "recipe": recipe,
        "data": runs[0]["data"],
        "machine": machine_info(),
        "python": platform.python_version(),
        "numpy": numpy_info(),
        "blas_threads": blas_threads(),
        "minidl": {"version": minidl.__version__, "commit": _git_commit()},
        "torch": {k: torch_run[k] for k in ("torch_version", "torch_threads", "torch_interop_threads", "mkldnn")},
        "runs": runs,
        "summary": summarise(runs),
    }


# --------------------------------------------------------------------------------------------------
# The report, and its section of the shared Markdown file
# --------------------------------------------------------------------------------------------------
def _secs(reached):
    return "not reached" if reached is None else f"{reached['train_s']:.1f} s (epoch {reached['epoch']:.2f})"


def render_report(data):
    """The Markdown report (without the section markers)."""
    mach, npi, blas, tm, rc, s = (data["machine"], data["numpy"], data["blas_threads"], data["torch"],
                                  data["recipe"], data["settings"])
    summ, sizes = data["summary"], data["data"]
    pct, goal = GOAL
    quick = " (smoke run, `--quick`: numbers not meaningful)" if data["quick"] else ""
    L = [f"# Time to accuracy: minidl (NumPy) vs PyTorch, mini AlexNet on Fashion-MNIST, CPU{quick}", ""]
    if data["quick"]:
        L += [f"> **Smoke run (`--quick`)**: {sizes['train']:,} training images, 1 epoch, batch "
              f"{rc['batch_size']}, {s['eval_points_per_epoch']} evaluation points. It checks that the benchmark "
              "runs; its times and accuracies are not a measurement to quote.", ""]
    L += [f"Generated {data['started_utc']} by `{data['command']}`.", "",
          f"**Goal: minidl's time to {pct}% validation top-1 at most {goal}x PyTorch's.** "
          f"This run: **{summ['verdict']}**.", "", "## Machine and software", "", "| | |", "|---|---|"]
    L += machine_rows(mach, data["python"])
    L.append(f"| NumPy | {npi['version']}; BLAS: {blas_text(npi, blas)}; {blas['threads']} BLAS threads by default "
             f"(from {blas['source']}) |")
    commit = f" (commit {data['minidl']['commit']})" if data["minidl"].get("commit") else ""
    L.append(f"| minidl | {data['minidl']['version']}{commit} |")
    L.append(f"| PyTorch | {tm['torch_version']}, oneDNN (mkldnn) {'available' if tm['mkldnn'] else 'not available'} |")
    m_run = next(r for r in data["runs"] if r["framework"] == "minidl")
    budget = (f"{m_run['threads']} core{'' if m_run['threads'] == 1 else 's'} (`--threads`)" if s.get("threads")
              else f"all {m_run['usable_cores']} usable cores")
    if m_run.get("tower_threads"):
        m_threads = ("its two towers in a thread each, each with a one-thread BLAS (`minidl.runtime."
                     "tower_threads_pay`), as `alexnet.train` runs on this machine")
    else:
        n = m_run["blas"]["threads"]
        m_threads = (f"the towers one after the other, with {n} BLAS thread{'' if n == 1 else 's'}"
                     + ("" if s.get("threads") else ", as `alexnet.train` runs on this machine"))
    L.append(f"| Threads | {budget} for each framework. minidl: {m_threads}, freed memory kept for the next step "
             f"(`minidl.runtime.tuned`); PyTorch: `torch.set_num_threads({m_run['threads']})` (it reports "
             f"{tm['torch_threads']} intra-op and {tm['torch_interop_threads']} inter-op threads), its own "
             "allocator settings |")
    load = s.get("load_average")
    if load is not None:
        busy = " (**other processes were running**: the times are worth little)" if load[0] > 0.5 else ""
        L.append(f"| Load average (1 min) | {load[0]:.2f} at the start{busy}, {load[1]:.2f} at the end "
                 "(this benchmark's own work included) |")
    sched = f"divided by 10 every {rc['lr_step']} epochs"
    L += ["", "## What was run", "",
          f"- **Network**: preset `{PRESET}` (1x28x28 input, two towers, 10 classes). minidl runs "
          "`alexnet.build_model('mini')`; PyTorch runs its twin `benchmarks.step.build_torch_model('mini')` (grouped "
          "convs for the towers, `nn.LocalResponseNorm`, `nn.Dropout(0.5)` after fc6 and fc7) given minidl's initial "
          f"weights (`{rc['init']}` initialisation, seed {rc['seed']}), so both start from the same weights.",
          f"- **Data**: Fashion-MNIST, {sizes['train']:,} training images, {sizes['val']:,} validation images "
          f"(class-balanced, held out of the training set, the same for every seed: `alexnet.dataspec`), "
          f"{sizes['test']:,} test images (reported only). Both workers build every batch with the project's own "
          "code, as `alexnet.train` does: the `DataLoader`'s shuffled order (seed, epoch), `TrainTransform` "
          "(random horizontal flips, then the data spec's mean and standard deviation) seeded per batch with "
          "(seed, epoch, batch); PyTorch gets those very arrays through `torch.from_numpy`. Evaluation: the whole "
          "image, normalised (`EvalTransform`).",
          f"- **Recipe** (`alexnet.settings.TrainConfig` for `{PRESET}`, flags applied to both): {rc['epochs']} "
          f"epoch(s), batch {rc['batch_size']}, learning rate {rc['lr']:g} {sched}, SGD momentum "
          f"{rc['momentum']:g}, weight decay {rc['weight_decay']:g} on every parameter (biases too), softmax "
          "cross-entropy (batch mean). The update is minidl's, `v <- m v - wd lr w - lr g; w <- w + v`, in both: "
          "PyTorch runs it written out (`TorchSGD`), because `torch.optim.SGD`'s form applies its whole velocity "
          "at the new rate when the rate changes. Dropout masks come from each framework's own generator.",
          f"- **The clock**: training wall time only, from just before the first batch is fetched (fetching and "
          f"augmenting batches included, identical in both). At {s['eval_points_per_epoch']} evenly spaced points "
          "per epoch (the last at the epoch's end) the clock stops, the validation split is evaluated (timed "
          f"apart: *eval s*), and the clock goes on. **Time to X% = the training time at the first evaluation "
          "point whose validation top-1 is at least X%**; resolution: one evaluation interval. img/s = training "
          "images / training time. *Start-up* (not in the clock): from launching the worker process to its first "
          "step: the interpreter, imports, reading the data, building the model.",
          f"- **Runs**: {s['repeats']} per framework, alternating (minidl run 1, PyTorch run 1, minidl run 2, ...), "
          "each in its own process; **peak MB** is that process's peak RSS (`ru_maxrss`) at the end, imports and "
          "the Fashion-MNIST arrays included.",
          "", "## Summary", "",
          "Medians over the runs; a run that did not reach a target counts as slower than any that did.", "",
          "| framework | runs | " + " | ".join(f"time to {p}% (s)" for p in TARGETS)
          + " | final val top-1 | test top-1 | img/s | training s | eval s | start-up s | peak MB |",
          "|---|---:|" + "---:|" * len(TARGETS) + "---:|" * 7]
    for fw, label in (("minidl", "minidl"), ("torch", "PyTorch")):
        f = summ["frameworks"][fw]
        reached = [f"{fmt_or(f[f'time_to_{p}_s'], '.1f', 'not reached')}"
                   + (f" ({f[f'reached_{p}']}/{f['runs']} reached)" if 0 < f[f"reached_{p}"] < f["runs"] else "")
                   for p in TARGETS]
        L.append(f"| {label} | {f['runs']} | {' | '.join(reached)} | {100 * f['final_val_top1']:.2f}% "
                 f"| {100 * f['test_top1']:.2f}% | {fmt_or(f['images_per_s'], '.0f')} | {f['train_s']:.1f} "
                 f"| {f['eval_s']:.1f} | {fmt_or(f['startup_s'], '.1f')} | {f['peak_mb']:.0f} |")
    L += ["", f"minidl / PyTorch, time to {pct}%: **{fmt_or(summ['ratio'], '.2f')}** (goal: at most {goal}).", "",
          "## Every run", "",
          "| run | framework | " + " | ".join(f"time to {p}%" for p in TARGETS)
          + " | final val top-1 | test top-1 | img/s | training s | eval s "
          "| start-up s (interpreter and imports, data, model) | peak MB |",
          "|---|---|" + "---|" * len(TARGETS) + "---:|" * 5 + "---|---:|"]
    for r in data["runs"]:
        st = r["startup"]
        div = f" (loss not finite at step {r['diverged_at_step']})" if r.get("diverged_at_step") else ""
        times = " | ".join(_secs(r["time_to"][str(p)]) for p in TARGETS)
        L.append(f"| {r['run']} | {r['framework']}{div} | {times} "
                 f"| {100 * r['final_val_top1']:.2f}% | {100 * r['test_top1']:.2f}% | {fmt_or(r['images_per_s'], '.0f')} "
                 f"| {r['train_s']:.1f} | {r['eval_s']:.1f} | {fmt_or(st['total_s'], '.1f')} ({st['imports_s']:.1f}, "
                 f"{st['data_s']:.1f}, {st['model_s']:.1f}) | {r['peak_mb']:.0f} |")
    L += ["", "## Validation top-1 at each evaluation point", "",
          "Training time (s) / validation top-1 of each run at each point.", "",
          "| epoch | " + " | ".join(f"{r['framework']} {r['run']}" for r in data["runs"]) + " |",
          "|---:|" + "---|" * len(data["runs"])]
    rows = max(len(r["points"]) for r in data["runs"])
    for i in range(rows):
        first = next(r["points"][i] for r in data["runs"] if i < len(r["points"]))
        cells = [f"{r['points'][i]['train_s']:.1f} / {100 * r['points'][i]['val_top1']:.2f}%"
                 if i < len(r["points"]) else "" for r in data["runs"]]
        L.append(f"| {first['epoch']:.2f} | " + " | ".join(cells) + " |")
    L += ["", "What differs between the two, besides the framework: the dropout masks (each framework's own "
          "generator); PyTorch's LRN window crosses the tower boundary at one channel pair where minidl's "
          "per-tower LRN stops (with alpha 1e-4, a small change to those two channels); the "
          "summation order of every reduction. Source: `benchmarks/time_to_accuracy.py`.", ""]
    return "\n".join(L)


def split_section(text):
    """(the text without its time-to-accuracy section, the section with its markers or None)."""
    start = text.find(START)
    if start < 0:
        return text, None
    end = text.find(END, start)
    end = len(text) if end < 0 else end + len(END)     # a lost end marker: the section runs to the end
    return text[:start].rstrip("\n") + ("\n" if start else "") + text[end:].lstrip("\n"), text[start:end]


def with_section(text, section):
    """``text`` with ``section`` (markers included) at the end, after the rest, one blank line between."""
    rest = text.rstrip("\n")
    return (rest + "\n\n" if rest else "") + section.rstrip("\n") + "\n"


def write_section(path, report):
    """Write ``report`` as the time-to-accuracy section of ``path``: in place of the one there, else at the end;
    the rest of the file (benchmarks.step's report) kept."""
    from minidl.atomic import atomic_write

    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    rest, _ = split_section(old)
    with atomic_write(path, "w") as f:
        f.write(with_section(rest, f"{START}\n{report.rstrip()}\n{END}"))


def check_output(path, flag):
    """A UserError now, before minutes of training, if ``path`` cannot be written."""
    from alexnet.cli import UserError
    from alexnet.runs import check_writable

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    check_writable(str(p.parent), f"{flag} {path}: cannot write into {{folder}} ({{reason}}); choose another path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{flag} {path} is not writable; choose another path")


def have_torch():
    return importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def build_parser():
    from alexnet.cli import OneLineParser, positive_float, positive_int, user_path

    p = OneLineParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="runs per framework, alternating minidl and torch (default 1)")
    p.add_argument("--epochs", type=positive_int, help="default: the mini preset's recipe")
    p.add_argument("--batch-size", type=positive_int, help="default: the mini preset's recipe")
    p.add_argument("--lr", type=positive_float, help="default: the mini preset's recipe")
    p.add_argument("--lr-step", type=positive_int, help="epochs between divisions of the rate by 10 "
                   "(default: the mini preset's recipe)")
    p.add_argument("--eval-points-per-epoch", type=positive_int, default=4,
                   help="validation evaluations per epoch, evenly spaced, the clock stopped (default 4)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="the cores each framework may use (default: all usable ones); PyTorch's set_num_threads, "
                        "and minidl's thread per tower or BLAS threads")
    p.add_argument("--data-dir", type=user_path, default=None,
                   help="where the Fashion-MNIST .gz files are (default: the project's search)")
    p.add_argument("--out", type=user_path, default=str(DEFAULT_OUT),
                   help="Markdown file whose time-to-accuracy section is written (default docs/benchmarks.md)")
    p.add_argument("--json", type=user_path, default=None, help="also save the raw results as JSON here")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['train']} training images, {QUICK['val']} validation, {QUICK['test']} "
                        f"test, batch {QUICK['batch_size']}, {QUICK['epochs']} epoch, {QUICK['eval_points']} "
                        "evaluation points, 1 repeat (numbers not meaningful)")
    # worker mode (internal)
    p.add_argument("--worker", choices=("minidl", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    return p


def _main(argv):
    from alexnet.cli import UserError

    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.repeats, args.epochs, args.batch_size = 1, QUICK["epochs"], QUICK["batch_size"]
        args.eval_points_per_epoch = QUICK["eval_points"]
    if not have_torch():
        raise UserError(f"PyTorch is not installed and this benchmark compares against it: install it: {TORCH_HINT}")
    recipe = resolve_recipe(args.epochs, args.batch_size, args.lr, args.lr_step)
    check_output(args.out, "--out")
    if args.json:
        check_output(args.json, "--json")
    # the data found and the batch size checked (or why not, in one line) before any worker starts
    RunData(args.data_dir, recipe["batch_size"], recipe["seed"], quick=args.quick)
    data = run_benchmark(args, recipe)
    report = render_report(data)
    print(report)
    write_section(args.out, report)
    log_line(f"report written to {args.out} (its time-to-accuracy section)")
    if args.json:
        write_json(args.json, data)
    return 0


def main(argv=None):
    from alexnet.cli import run_cli

    return run_cli("time_to_accuracy", _main, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
