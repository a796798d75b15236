"""Train AlexNet with the paper's recipe (Section 5).

    python -m alexnet.train                                   # mini preset, Fashion-MNIST, CPU
    python -m alexnet.train --preset paper --backend cupy --gpus 0,1
    python -m alexnet.train --out runs/mini --resume          # continue where it stopped

SGD with momentum 0.9 and weight decay 5e-4, batch 128, learning rate 0.01
divided by 10 when the test error stops improving (``--lr-schedule
plateau``, at most three times) or every ``--lr-step`` epochs (``step``).
The mini preset has its own defaults, tuned for a 15-minute CPU run: batch
64, learning rate 0.02, 8 epochs, divided by 10 after epoch 6.

The run folder (``--out``) holds config.json, metrics.jsonl (one JSON object
per logged step and per epoch), checkpoints/last.npz and best.npz (weights,
optimizer, schedule, counters, random state; written atomically) and
curves.png. ``--resume`` continues bit for bit: the data order depends only
on (seed, epoch), the augmentation of a batch only on (seed, epoch, batch),
and the dropout masks on counters saved in the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from minidl import SGD, ReduceLROnPlateau, SoftmaxCrossEntropy, StepLR, checkpoint
from minidl.atomic import atomic_write, remove_stale
from minidl.backend import asnumpy, get_array_module, to_device
from minidl.data import DataLoader, subset_indices
from minidl.runtime import tower_threads_pay, tuned

from .cli import (
    OneLineParser, UserError, momentum_float, nonneg_float, nonneg_int, positive_float, positive_int, preset_names,
    run_cli,
)
from .dataspec import DataSpec, describe_data, make_transforms, open_split
from .devices import gpu_memory_error, is_gpu_out_of_memory, tower_devices
from .plots import pyplot
from .runs import check_writable, load_weights, read_run_config, write_run_config
from .configs import get_config
from .evaluate import evaluate
from .finetune import adapt_data_spec, format_preset, freeze, guess_format, init_from
from .model import INITS, build_model
from .weights.state import WeightsError

# Per-preset defaults. The paper's recipe (batch 128, lr 0.01, ~90 epochs, the rate
# divided by 10 when the validation error stops improving) for the ImageNet presets.
# mini is tuned to reach its accuracy within the README's 15 minutes on two cores:
# batch 64 at lr 0.02 for six epochs, then 0.002 for two (one-epoch-plus-drop probes
# on Fashion-MNIST: 86.9% for batch 128 at 0.01, 87.5% at 0.02, 88.2% for batch 64
# at 0.02; images/s is the same for 64 and 128).
DEFAULT_EPOCHS = {"mini": 8}
DEFAULT_LR_STEP = {"mini": 6}
DEFAULT_BATCH_SIZE = {"mini": 64}
DEFAULT_LR = {"mini": 0.02}

# On --resume the run's saved settings apply. These may be changed, from the checkpoint's step on:
RESUME_CHANGEABLE = ("lr", "lr_schedule", "lr_step", "epochs", "max_steps")
# these only steer the run (where it writes, what it prints, how it evaluates, which device):
RESUME_FREE = ("out", "resume", "no_progress", "eval_every", "log_every", "checkpoint_every", "checkpoint_minutes",
               "ten_crop",
               "test_subset", "backend", "gpus", "data_dir")


def build_parser():
    p = OneLineParser(prog="python -m alexnet.train", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--preset", choices=preset_names(), default="mini", help="network preset (default: mini)")
    a("--data", default="fashion-mnist",
      help="'fashion-mnist' (default), a folder made by alexnet.prepare, or an ImageNet-style folder")
    a("--data-dir", default=None, help="where the Fashion-MNIST .gz files are (searched otherwise)")
    a("--backend", choices=["numpy", "cupy"], default="numpy")
    a("--gpus", default=None, help="with --backend cupy: the GPU of each tower, e.g. 0,1 (0,0: both on GPU 0)")
    a("--epochs", type=positive_int, default=None, help="default: 8 for mini, 90 otherwise")
    a("--batch-size", type=positive_int, default=None, help="default: 64 for mini, 128 (the paper's) otherwise")
    a("--lr", type=positive_float, default=None, help="default: 0.02 for mini, 0.01 (the paper's) otherwise")
    a("--momentum", type=momentum_float, default=0.9, help="in [0, 1) (default 0.9)")
    a("--weight-decay", type=nonneg_float, default=5e-4)
    a("--lr-schedule", choices=["plateau", "step"], default=None,
      help="plateau: divide by 10 when the test error stops improving (the paper); step: every --lr-step "
           "epochs (default for mini)")
    a("--lr-step", type=positive_int, default=None,
      help="epochs between divisions with --lr-schedule step (default: 6 for mini, else epochs/3)")
    a("--seed", type=nonneg_int, default=0)
    a("--out", default=None, help="run folder (default: runs/<preset>-<data>)")
    a("--resume", action="store_true",
      help="continue the run in --out from its last checkpoint, with the settings it was started with "
           "(config.json); from the checkpoint's step on you may change " + ", ".join(
               f"--{k.replace('_', '-')}" for k in RESUME_CHANGEABLE) + " (each change is printed and logged); "
           "the other training settings are fixed by the checkpoint")
    a("--eval-every", type=positive_int, default=1, help="evaluate on the test split every N epochs")
    a("--ten-crop", action="store_true", help="evaluate with ten crops per image (the paper's testing)")
    a("--max-steps", type=positive_int, default=None, help="stop after this many steps in all (quick runs)")
    a("--train-subset", type=positive_int, default=None, help="train on a fixed random subset of N images")
    a("--test-subset", type=positive_int, default=None, help="evaluate on the first N test images only")
    a("--init", choices=INITS, default=None, help="initialisation (default: the preset's)")
    a("--log-every", type=positive_int, default=50, help="steps between metrics.jsonl entries")
    a("--checkpoint-every", type=positive_int, default=None, help="also save last.npz every N steps")
    a("--checkpoint-minutes", type=nonneg_float, default=5.0,
      help="also save last.npz when this many minutes have passed since the last save (default 5; 0: off). "
           "last.npz is also saved at every epoch's end and on Ctrl-C, so a killed run loses at most the "
           "steps since the last save: --resume continues from there")
    a("--no-progress", action="store_true", help="no progress bar")
    add_finetune_flags(p)
    return p


# --- fine-tuning (alexnet.pretrained) ------------------------------------------------
def add_finetune_flags(p):
    a = p.add_argument
    a("--init-from", default=None, metavar="FILE",
      help="start from trained weights: a torchvision state dict (.pth/.safetensors/.npz), bvlc_alexnet.npy, "
           "or a minidl checkpoint (or run folder) of the same preset")
    a("--format", choices=["torchvision", "caffe", "run"], default=None,
      help="format of --init-from (default: from the file name); it sets the preset: torchvision -> "
           "'torchvision', caffe -> 'bvlc', run -> the checkpoint's")
    a("--train-layers", default=None, metavar="STAGES",
      help="train only these stages, e.g. fc6,fc7,fc8; every other parameter is frozen (default: all)")


def setup_finetune(args, argv):
    """Before anything is built: the preset follows the --init-from weights' format."""
    if args.resume and args.init_from is not None:
        return                                          # the saved settings already say the preset
    if args.init_from is None:
        if args.format is not None:
            raise UserError("--format describes --init-from FILE; give the file too")
        return
    try:
        args.format = args.format or guess_format(args.init_from)
        preset = format_preset(args.format, args.init_from)
    except WeightsError as exc:
        raise UserError(str(exc)) from None
    if "preset" in _explicit_flags(argv) and args.preset != preset:
        raise UserError(f"--init-from {args.init_from} ({args.format} weights) loads into preset '{preset}', "
                        f"not '{args.preset}'; leave out --preset")
    args.preset = preset


def init_finetune(model, args, spec):
    """After the model is built: load --init-from (not on --resume), freeze all but --train-layers."""
    try:
        if args.init_from is not None and not args.resume:
            info = init_from(model, args.init_from, args.format)
            head = ("kept" if info["head"] == "loaded" else
                    f"replaced by a new {model.num_classes}-class head ({info['classes']} classes in the file)")
            print(f"initialised from {args.init_from} ({args.format}); fc8 {head}", flush=True)
        if args.init_from is not None and adapt_data_spec(spec, args.format, args.init_from):
            print(f"input normalisation of the weights: mean {spec.mean}, std {spec.std}", flush=True)
        if args.train_layers:
            trained = freeze(model, args.train_layers)
            print(f"training {','.join(trained)}; every other parameter is frozen", flush=True)
    except WeightsError as exc:
        raise UserError(str(exc)) from None
# --- end fine-tuning -----------------------------------------------------------------


class NonFiniteLoss(Exception):
    """args: (step, what) -- what became NaN or infinite: 'loss' or 'weights'."""


class Trainer:
    def __init__(self, args, spec: DataSpec, devices):
        self.args, self.spec = apply_preset_defaults(args), spec
        cfg = get_config(args.preset)
        self.train_set = open_split(spec, "train")
        self.test_set = open_split(spec, "test")
        indices = None
        n_train = len(self.train_set)
        if args.train_subset:
            n_train = min(args.train_subset, n_train)
            indices = subset_indices(self.train_set.labels, n_train, args.seed)
        if args.batch_size > n_train:
            raise UserError(f"--batch-size {args.batch_size} is larger than the training set "
                            f"({n_train} images); use a smaller batch")
        self.loader = DataLoader(self.train_set, args.batch_size, shuffle=True, seed=args.seed, drop_last=True,
                                 indices=indices, prefetch=2)
        self.model = build_model(args.preset, num_classes=spec.num_classes, in_channels=spec.in_channels,
                                 devices=devices, init=args.init, seed=args.seed)
        init_finetune(self.model, args, spec)          # may set the input normalisation of the weights
        self.train_tf, self.eval_tf = make_transforms(spec, cfg.input_size)
        _, self.eval_tf_final = make_transforms(spec, cfg.input_size, ten_crop=args.ten_crop)
        self.home = self.model.devices[0]
        self.optim = SGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay)
        if args.lr_schedule == "step":
            self.sched = StepLR(self.optim, args.lr_step)
        else:
            self.sched = ReduceLROnPlateau(self.optim, factor=0.1, patience=1, max_reductions=3)
        self.loss_fn = SoftmaxCrossEntropy()
        # progress counters, all saved in checkpoints
        self.epoch, self.batch, self.step = 0, 0, 0
        self.best_top1, self.last_eval = -1.0, None
        self.epoch_stats = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self.history = []          # per-epoch metrics, for curves.png
        self.stop_requested = False
        self.saved_at = time.monotonic()      # --checkpoint-minutes counts from here
        self.out = args.out
        self.ckpt_dir = os.path.join(self.out, "checkpoints")

    # -- state ----------------------------------------------------------------
    def state(self):
        return {
            "model": dict(self.model.state_dict()),
            "optim": self.optim.state_dict(),
            "sched": self.sched.state_dict(),
            "rng": self.model.rng_state(),
            "progress": {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                         "best_top1": self.best_top1, "epoch_stats": dict(self.epoch_stats)},
            "run": self.run_identity(),
        }

    def run_identity(self):
        """The settings a checkpoint can only be resumed with."""
        return {"preset": self.args.preset, "data": self.spec.kind, "num_classes": self.spec.num_classes,
                "seed": self.args.seed, "batch_size": self.args.batch_size, "train_subset": self.args.train_subset}

    def save(self, name="last"):
        # a finite loss can still be followed by an update that overflows the weights:
        # such a state is never written over the last good checkpoint
        by_device = {}
        for p in self.model.parameters():
            by_device.setdefault(p.device, []).append(p.data)
        for device, arrays in by_device.items():
            with device:              # one reduction and one host synchronisation per device
                xp = get_array_module(arrays[0])
                if not bool(xp.stack([xp.isfinite(a).all() for a in arrays]).all()):
                    raise NonFiniteLoss(self.step, "weights")
        path = checkpoint.save(os.path.join(self.ckpt_dir, f"{name}.npz"), self.state())
        self.saved_at = time.monotonic()
        return path

    def restore(self, path, changed=()):
        """Continue from a checkpoint; ``changed``: the RESUME_CHANGEABLE settings given anew.

        A new --lr is the rate from this step on; with a new --lr, --lr-step or
        --lr-schedule the step schedule counts its epochs from here.
        """
        state = checkpoint.load(path)
        run = state.get("run")
        mine = self.run_identity()
        if run != mine:
            if not isinstance(run, dict):
                raise UserError(f"{path} is not a checkpoint of `python -m alexnet.train` (no run settings)")
            diff = {k: (run.get(k), v) for k, v in mine.items() if run.get(k) != v}
            raise UserError(f"cannot resume {path}: it was trained with other settings "
                            + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))
        load_weights(self.model, state, path)
        try:
            self.optim.load_state_dict(state["optim"])
            if "lr_schedule" not in changed:
                self.sched.load_state_dict(state["sched"])
            self.model.set_rng_state(state["rng"])
            prog = state["progress"]
            self.epoch, self.batch, self.step = int(prog["epoch"]), int(prog["batch"]), int(prog["step"])
            self.best_top1 = float(prog["best_top1"])
            self.epoch_stats = {k: type(v)(prog["epoch_stats"][k]) for k, v in self.epoch_stats.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path} is damaged: its training state does not load ({type(exc).__name__}: {exc})") \
                from None
        if self.batch < 0 or self.epoch < 0 or self.step < 0:
            raise UserError(f"{path} is damaged: negative progress counters")
        if self.batch > len(self.loader):
            raise UserError(f"{path} stopped at batch {self.batch} of epoch {self.epoch + 1}, but the training data "
                            f"now gives {len(self.loader)} batches per epoch ({self.loader.num_examples} images): "
                            "the data changed since the run began; restore it, or start a new run")
        if "lr" in changed:
            self.optim.lr = self.args.lr
        if isinstance(self.sched, StepLR) and set(changed) & {"lr", "lr_step", "lr_schedule"}:
            self.sched.base_lr, self.sched.epoch = self.optim.lr, 0

    # -- metrics ------------------------------------------------------------
    def log(self, record):
        with open(os.path.join(self.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def trim_metrics(self):
        """On resume, forget entries logged after the checkpoint (they will be redone)."""
        path = os.path.join(self.out, "metrics.jsonl")
        if not os.path.lexists(path):
            return
        if not os.path.isfile(path):
            raise UserError(f"{path} is not a regular file; move it away to resume")
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                if number >= len(lines) - 1:
                    continue                    # the last line, cut short by a kill
                rec = None
            if not isinstance(rec, dict) or not isinstance(rec.get("step", 0), int):
                raise UserError(f"{path} line {number} is not a metrics record "
                                f"({line[:60].decode('utf-8', 'backslashreplace')}); remove that line to resume")
            if rec.get("step", 0) <= self.step:
                kept.append(rec)
        with atomic_write(path, "w") as f:
            for rec in kept:
                f.write(json.dumps(rec) + "\n")
        self.history = [r for r in kept if r.get("type") == "epoch"]

    # -- the loop -------------------------------------------------------------
    def train_step(self, images, labels):
        """One SGD step; returns (loss, correct) as arrays on the first device (not synchronised)."""
        rng = np.random.default_rng([self.args.seed, self.epoch, self.batch])
        with self.home:
            x = self.train_tf(to_device(images, self.home), rng)
            y = to_device(labels, self.home)
            self.model.train()
            logits = self.model.forward(x)
            loss = self.loss_fn.compute(logits, y)
            correct = (logits.argmax(axis=1) == y).sum()
            self.optim.zero_grad()
            self.model.backward(self.loss_fn.backward())
            self.optim.step()
        return loss, correct

    def run_eval(self, final=False):
        tf = self.eval_tf_final if final else self.eval_tf
        return evaluate(self.model, self.test_set, tf, batch_size=max(self.args.batch_size, 100),
                        limit=self.args.test_subset)

    def fit(self):
        args = self.args
        total_epochs = args.epochs
        progress = not args.no_progress
        pending = []                 # (step, loss array, correct array, batch size) not yet synchronised
        t_log = time.perf_counter()
        imgs_since_log = 0

        def flush():
            nonlocal pending
            if not pending:
                return None
            with self.home:             # one host synchronisation for all the pending results
                xp = get_array_module(pending[0][1])
                both = xp.stack([xp.stack([p[1] for p in pending]).astype(xp.float64),
                                 xp.stack([p[2] for p in pending]).astype(xp.float64)])
                losses, corrects = asnumpy(both)
            corrects = [int(c) for c in corrects]
            for (step, _, _, bs), loss, corr in zip(pending, losses, corrects):
                if not np.isfinite(loss):
                    pending = []
                    raise NonFiniteLoss(step, "loss")
                self.epoch_stats["loss"] += float(loss) * bs
                self.epoch_stats["correct"] += corr
                self.epoch_stats["seen"] += bs
            last = (float(losses[-1]), corrects[-1] / pending[-1][3])
            pending = []
            return last

        while self.epoch < total_epochs and not self._done():
            n_batches = len(self.loader)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=n_batches, initial=self.batch, desc=f"epoch {self.epoch + 1}/{total_epochs}",
                           unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)
            t_epoch = time.perf_counter()
            for images, labels in self.loader.batches(self.epoch, start=self.batch):
                loss, correct = self.train_step(images, labels)
                self.step += 1
                self.batch += 1
                pending.append((self.step, loss, correct, len(labels)))
                imgs_since_log += len(labels)
                sync_now = (self.step % args.log_every == 0 or get_array_module(loss) is np
                            or self.batch == n_batches or self._done())
                if sync_now:
                    last = flush()
                    if bar is not None and last is not None:
                        dt = time.perf_counter() - t_log
                        bar.set_postfix(loss=f"{last[0]:.3f}", acc=f"{100 * last[1]:.1f}%",
                                        ips=f"{imgs_since_log / max(dt, 1e-9):.0f}", refresh=False)
                if self.step % args.log_every == 0:
                    dt = time.perf_counter() - t_log
                    st = self.epoch_stats
                    self.log({"type": "step", "step": self.step, "epoch": self.epoch + self.batch / n_batches,
                              "loss": st["loss"] / max(st["seen"], 1), "acc": st["correct"] / max(st["seen"], 1),
                              "lr": self.optim.lr, "images_per_s": imgs_since_log / max(dt, 1e-9)})
                    t_log, imgs_since_log = time.perf_counter(), 0
                if bar is not None:
                    bar.update(1)
                due = args.checkpoint_every and self.step % args.checkpoint_every == 0
                due = due or (args.checkpoint_minutes
                              and time.monotonic() - self.saved_at >= 60 * args.checkpoint_minutes)
                if due and self.batch < n_batches:      # an epoch's end saves anyway
                    flush()
                    self.epoch_stats["time"] += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    self.save("last")
                if self.stop_requested or self._done():
                    break
            flush()
            if bar is not None:
                bar.close()
            self.epoch_stats["time"] += time.perf_counter() - t_epoch
            if self.stop_requested:
                self.save("last")
                return "interrupted"
            epoch_finished = self.batch >= n_batches
            if epoch_finished:
                self.end_epoch(total_epochs)
            elif self._done():
                self.save("last")
        if self.last_eval is None or self.last_eval.get("step") != self.step:
            self.final_eval()
        return "done"

    def _done(self):
        return self.args.max_steps is not None and self.step >= self.args.max_steps

    def end_epoch(self, total_epochs):
        st = self.epoch_stats
        seen = max(st["seen"], 1)
        record = {"type": "epoch", "epoch": self.epoch + 1, "step": self.step, "train_loss": st["loss"] / seen,
                  "train_acc": st["correct"] / seen, "lr": self.optim.lr, "time": st["time"],
                  "images_per_s": st["seen"] / max(st["time"], 1e-9)}
        evaluated = (self.epoch + 1) % self.args.eval_every == 0 or self.epoch + 1 == total_epochs
        if evaluated:
            res = self.run_eval(final=self.epoch + 1 == total_epochs)
            record.update(test_loss=res["loss"], test_top1=res["top1"], test_top5=res["top5"])
            self.last_eval = {"step": self.step, **record}
        line = (f"epoch {self.epoch + 1}/{total_epochs}  train loss {record['train_loss']:.4f} "
                f"acc {100 * record['train_acc']:.2f}%")
        if evaluated:
            line += f"  test top-1 {100 * record['test_top1']:.2f}% top-5 {100 * record['test_top5']:.2f}%"
        line += f"  lr {self.optim.lr:g}  {record['time']:.0f}s ({record['images_per_s']:.0f} img/s)"
        print(line, flush=True)
        # the schedule sees this epoch's result; the epoch is then complete
        if isinstance(self.sched, ReduceLROnPlateau):
            if evaluated:
                self.sched.step(1 - record["test_top1"])
        else:
            self.sched.step()
        self.epoch += 1
        self.batch = 0
        self.epoch_stats = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self.log(record)
        self.history.append(record)
        improved = evaluated and record["test_top1"] > self.best_top1
        if improved:
            self.best_top1 = record["test_top1"]
        self.save("last")
        if improved:
            self.save("best")
        self.plot()

    def final_eval(self):
        """A run stopped mid-epoch (--max-steps): evaluate what it has."""
        res = self.run_eval(final=True)
        record = {"type": "eval", "epoch": self.epoch + self.batch / len(self.loader), "step": self.step,
                  "test_loss": res["loss"], "test_top1": res["top1"], "test_top5": res["top5"]}
        self.log(record)
        print(f"step {self.step}: test top-1 {100 * res['top1']:.2f}% top-5 {100 * res['top5']:.2f}% "
              f"(loss {res['loss']:.4f})", flush=True)
        improved = res["top1"] > self.best_top1
        if improved:
            self.best_top1 = res["top1"]
        self.save("last")
        if improved:
            self.save("best")
        self.last_eval = record

    def plot(self):
        if not self.history:
            return
        plt = pyplot()
        ep = [r["epoch"] for r in self.history]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        a1.plot(ep, [r["train_loss"] for r in self.history], "o-", label="train")
        if any("test_loss" in r for r in self.history):
            a1.plot([r["epoch"] for r in self.history if "test_loss" in r],
                    [r["test_loss"] for r in self.history if "test_loss" in r], "s-", label="test")
        a1.set_xlabel("epoch")
        a1.set_ylabel("cross-entropy loss")
        a1.legend()
        a2.plot(ep, [100 * r["train_acc"] for r in self.history], "o-", label="train (augmented, dropout)")
        tested = [r for r in self.history if "test_top1" in r]
        if tested:
            a2.plot([r["epoch"] for r in tested], [100 * r["test_top1"] for r in tested], "s-", label="test top-1")
        a2.set_xlabel("epoch")
        a2.set_ylabel("accuracy (%)")
        a2.legend()
        fig.suptitle(f"AlexNet '{self.args.preset}' on {self.spec.kind}")
        fig.tight_layout()
        with atomic_write(os.path.join(self.out, "curves.png")) as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)


def _explicit_flags(argv):
    """The destinations of the flags given on the command line (not defaults)."""

    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def apply_preset_defaults(args):
    """Fill the flags left at None with the preset's defaults (in place; returns args)."""
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS.get(args.preset, 90)
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH_SIZE.get(args.preset, 128)
    if args.lr is None:
        args.lr = DEFAULT_LR.get(args.preset, 0.01)
    if args.lr_schedule is None:
        args.lr_schedule = "step" if args.preset == "mini" else "plateau"
    if args.lr_schedule == "step" and args.lr_step is None:
        args.lr_step = DEFAULT_LR_STEP.get(args.preset) or max(1, math.ceil(args.epochs / 3))
    return args


def _parse_saved_args(saved, out):
    """A run's saved settings (config.json 'args'), checked by the parser that first accepted them."""
    class Strict(OneLineParser):
        def error(self, message):
            raise UserError(f"{os.path.join(out, 'config.json')} is damaged: its settings do not parse "
                            f"({message})")

    parser = build_parser()
    parser.__class__ = Strict
    flags = {a.dest: a for a in parser._actions if a.option_strings}
    argv = []
    for key, value in saved.items():
        action = flags.get(key)
        if action is None or value is None or key == "resume":
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if value not in (True, False):
                parser.error(f"{key} must be true or false, got {value!r}")
            argv += [action.option_strings[0]] if value else []
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            argv += [action.option_strings[0], str(value)]
        else:
            parser.error(f"{key} is {value!r}")
    return parser.parse_args(argv)


def resume_settings(args, saved, given):
    """Give ``args`` the saved settings of a run being resumed; return the allowed changes.

    A flag given now keeps its new value if it only steers the run
    (RESUME_FREE) or may change from the checkpoint on (RESUME_CHANGEABLE:
    returned as ``{name: (saved, new)}``); any other flag must repeat the
    saved value, else a UserError lists them.
    """
    parsed = vars(apply_preset_defaults(_parse_saved_args(saved, args.out)))
    saved = {key: parsed[key] for key in saved if key in parsed}
    changes, fixed = {}, []
    for key, value in saved.items():
        if key == "resume" or not hasattr(args, key):
            continue
        if key not in given:
            setattr(args, key, value)
            continue
        now = getattr(args, key)
        same = now == value or (key == "data" and isinstance(now, str) and isinstance(value, str)
                                and os.path.realpath(now) == os.path.realpath(value))
        if same or key in RESUME_FREE:
            continue
        flag = "--" + key.replace("_", "-")
        if key in RESUME_CHANGEABLE:
            changes[key] = (value, now)
        else:
            fixed.append(f"{flag} {value if value is not None else '(not given)'} (given: {now})")
    if fixed:
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_CHANGEABLE)
        raise UserError(f"--resume continues {args.out} with the settings it was started with: "
                        f"{'; '.join(fixed)}. Only {allowed} can change on resume; to train with other "
                        "settings, start a new run with another --out")
    return changes


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    def default_out():
        data_name = args.data if args.data == "fashion-mnist" else os.path.basename(os.path.normpath(args.data))
        return os.path.join("runs", f"{args.preset}-{data_name}")

    out_defaulted = args.out is None
    if out_defaulted:
        args.out = default_out()
    changes, given = {}, _explicit_flags(argv)
    if args.resume:
        changes = resume_settings(args, read_run_config(args.out)["args"], given)
    setup_finetune(args, argv)
    if out_defaulted and not args.resume:
        args.out = default_out()        # --init-from may have chosen the preset
    cfg = get_config(args.preset)
    apply_preset_defaults(args)
    if "lr_step" in given and args.lr_schedule != "step":
        raise UserError(f"--lr-step applies to --lr-schedule step, not {args.lr_schedule} (the schedule of "
                        f"preset '{args.preset}' unless --lr-schedule says otherwise)")
    devices = tower_devices(args.backend, args.gpus, cfg.towers)
    spec = describe_data(args.data, args.data_dir, args.preset, init=args.init)
    check_writable(args.out)
    left = remove_stale(args.out) + remove_stale(os.path.join(args.out, "checkpoints"))
    if left:
        print(f"removed {len(left)} unfinished file(s) that a killed run left in {args.out}: {', '.join(left)}",
              flush=True)
    last = os.path.join(args.out, "checkpoints", "last.npz")
    if not args.resume and os.path.exists(last):
        raise UserError(f"{args.out} already holds a run; continue it with --resume, or choose another --out")
    if args.resume and not os.path.exists(last):
        best = os.path.join(args.out, "checkpoints", "best.npz")
        if os.path.exists(best):
            raise UserError(f"nothing to resume from: {last} is missing but {best} is there; copy it to last.npz to "
                            "continue from it, or choose another --out")
        print(f"{args.out} has no checkpoint yet (the run stopped before its first save): starting it again "
              "from step 0 with its settings", flush=True)
        args.resume, changes = False, {}

    # process-wide settings for this run only, recorded in config.json: the towers in a thread each
    # with a one-thread BLAS where that pays, and freed memory kept for the next step
    threads = all(d == "cpu" for d in devices) and tower_threads_pay(len(devices))
    with tuned(blas_threads=1 if threads else None, keep_freed_memory=True) as tuning:
        trainer = Trainer(args, spec, devices)
        trainer.model.tower_threads = threads and tuning["blas_threads"] == 1
        try:
            _start(trainer, args, changes, last, {**tuning, "tower_threads": trainer.model.tower_threads})
            return _fit(trainer, args, last)
        finally:
            trainer.model.tower_threads = False     # ends the tower threads


def _start(trainer, args, changes, last, runtime):
    """Restore the checkpoint (--resume) or start the run folder; say what is about to happen."""
    spec, devices = trainer.spec, [str(d) for d in trainer.model.devices]
    config = {"preset": args.preset, "init": trainer.model.init_scheme, "seed": args.seed,
              "towers": len(devices), "devices": devices, "args": vars(args), "data": dataclasses.asdict(spec),
              "runtime": runtime}
    if args.resume:
        trainer.restore(last, changed=changes)
        trainer.trim_metrics()
        print(f"resuming {args.out} at epoch {trainer.epoch + 1}, step {trainer.step}", flush=True)
        if changes:
            for key, (old, new) in changes.items():
                print(f"resume: --{key.replace('_', '-')} {new} from step {trainer.step} on (was {old})", flush=True)
            trainer.log({"type": "resume", "step": trainer.step,
                         "changed": {k: {"was": old, "now": new} for k, (old, new) in changes.items()}})
            write_run_config(args.out, config)      # a later --resume keeps the new settings
    else:
        write_run_config(args.out, config)
        open(os.path.join(args.out, "metrics.jsonl"), "w").close()
    for name, ds in (("train", trainer.train_set), ("test", trainer.test_set)):
        links = getattr(ds, "skipped_links", [])
        if links:
            print(f"{name}: did not follow {len(links)} folder link(s) leading back into {spec.path} (a loop, or "
                  f"images already listed): " + ", ".join(f"{a} -> {b}" for a, b in links[:3]), flush=True)
    print(f"training '{args.preset}' ({trainer.model.num_parameters():,} parameters) on {spec.kind} "
          f"({trainer.loader.num_examples} images, {spec.num_classes} classes), towers on {', '.join(devices)}"
          f"{' (a thread each)' if runtime['tower_threads'] else ''}; run folder {args.out}", flush=True)


def _fit(trainer, args, last):
    """Train until done, interrupted (Ctrl-C: save and exit 130) or diverged (exit 1)."""
    def on_sigint(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        print("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with warnings.catch_warnings():
            # a diverging run overflows in many places; the NaN check below reports it, once
            warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
            outcome = trainer.fit()
    except NonFiniteLoss as exc:
        step, what = exc.args
        lower = f"{trainer.optim.lr / 10:g}"
        rates = f"learning rate {trainer.optim.lr:g}, weight decay {args.weight_decay:g}"
        if os.path.exists(last):
            good = checkpoint.load(last, arrays=False)["progress"]["step"]
            advice = (f"the last good checkpoint, {last} (step {good}), is kept. Too large a step ({rates}) is the "
                      f"usual cause: continue at a lower rate with python -m alexnet.train --out {args.out} "
                      f"--resume --lr {lower}")
        else:
            advice = (f"no checkpoint was written yet. Too large a step ({rates}) is the usual cause: start again "
                      f"with a lower --lr (e.g. {lower}) or --weight-decay")
        print(f"train: error: the {what} became NaN or infinite at step {step}; stopping. {advice}", file=sys.stderr)
        return 1
    except Exception as exc:
        if is_gpu_out_of_memory(exc):
            raise gpu_memory_error(exc, args.batch_size, [str(d) for d in trainer.model.devices]) from None
        raise
    finally:
        signal.signal(signal.SIGINT, old)
    if outcome == "interrupted":
        print(f"interrupted at step {trainer.step}; checkpoint saved to {last}. "
              f"Continue with: python -m alexnet.train --out {args.out} --resume", flush=True)
        return 130
    best = f"{100 * trainer.best_top1:.2f}%" if trainer.best_top1 >= 0 else "n/a"
    print(f"done: {trainer.step} steps; best test top-1 {best}; run folder {args.out}", flush=True)
    return 0

def main(argv=None):
    return run_cli("train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
