"""The training loop: a Trainer runs SGD over a run's data and keeps its run folder.

It writes metrics.jsonl (one JSON object per logged step and per epoch),
checkpoints/last.npz and best.npz (weights, optimizer, schedule, counters,
random state; written atomically) and curves.png, and restores a checkpoint
bit for bit: the data order depends only on (seed, epoch), the augmentation
of a batch only on (seed, epoch, batch), and the dropout masks on counters
saved in the checkpoint. ``python -m alexnet.train`` is its command line.

Under MPI (``group``: a minidl.distributed group of K processes) each process
trains on rows [r B/K, (r+1) B/K) of every global batch of B, with the random
numbers those rows get in one process; the gradients are averaged over the
processes before every update, so all replicas take the same step, and only
process 0 writes and prints.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from minidl import SGD, ReduceLROnPlateau, SoftmaxCrossEntropy, StepLR, checkpoint
from minidl.atomic import atomic_write
from minidl.backend import asnumpy, get_array_module, to_device
from minidl.data import DataLoader, subset_indices
from minidl.distributed import Group, rows

from .cli import UserError
from .dataspec import DataSpec, make_transforms, open_split
from .evaluate import evaluate
from .finetune import init_finetune
from .model import build_model
from .plots import plot_curves
from .runs import load_weights
from .variants import augments

class NonFiniteLoss(Exception):
    """args: (step, what) -- what became NaN or infinite: 'loss' or 'weights'."""


class Trainer:
    """A training run: ``Trainer(config, spec, devices)`` with ``config`` an ``alexnet.settings.TrainConfig``."""

    def __init__(self, config, spec: DataSpec, devices, group=None):
        self.group = group = Group() if group is None else group
        self.config = config = config.resolved().check(processes=group.size)
        self.spec = spec
        variant = config.variant
        cfg = config.network()
        self.train_set = open_split(spec, "train")
        self.test_set = open_split(spec, "test")
        indices = None
        n_train = len(self.train_set)
        if config.train_subset:
            n_train = min(config.train_subset, n_train)
            indices = subset_indices(self.train_set.labels, n_train, config.seed)
        if config.batch_size > n_train:
            raise UserError(f"--batch-size {config.batch_size} is larger than the training set "
                            f"({n_train} images); use a smaller batch")
        self.loader = DataLoader(self.train_set, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                                 indices=indices, prefetch=2, shard=(group.rank, group.size))
        self.rows = rows(config.batch_size, group.rank, group.size)     # this process's rows of every batch
        self.model = build_model(cfg, num_classes=spec.num_classes, in_channels=spec.in_channels,
                                 devices=devices, init=config.init, seed=config.seed)
        self.model.set_batch_offset(self.rows.start)       # dropout draws the masks of this process's rows
        init_finetune(self.model, spec, config.init_from, config.format, config.train_layers,
                      load=not config.resume)          # may set the input normalisation of the weights
        self.train_tf, self.eval_tf = make_transforms(spec, cfg.input_size, augment=augments(variant))
        _, self.eval_tf_final = make_transforms(spec, cfg.input_size, ten_crop=config.ten_crop)
        self.home = self.model.devices[0]
        self.optim = SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
        group.prepare(self.model.parameters())          # how the gradients will be averaged
        if config.lr_schedule == "step":
            self.sched = StepLR(self.optim, config.lr_step)
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
        self.deadline = None                  # --max-minutes: time.monotonic() at which training stops
        self.time_up = False
        self.out = config.out
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
        return {"preset": self.config.preset, "data": self.spec.kind, "num_classes": self.spec.num_classes,
                "seed": self.config.seed, "batch_size": self.config.batch_size, "train_subset": self.config.train_subset}

    def save(self, name="last"):
        """Write checkpoints/<name>.npz (process 0 only; every process checks the weights)."""
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
        self.saved_at = time.monotonic()
        if not self.group.is_root:
            return None
        return checkpoint.save(os.path.join(self.ckpt_dir, f"{name}.npz"), self.state())

    def restore(self, path, changed=()):
        """Continue from a checkpoint; ``changed``: the settings --resume may change (alexnet.settings), given anew.

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
            self.optim.lr = self.config.lr
        if isinstance(self.sched, StepLR) and set(changed) & {"lr", "lr_step", "lr_schedule"}:
            self.sched.base_lr, self.sched.epoch = self.optim.lr, 0

    # -- metrics ------------------------------------------------------------
    def log(self, record):
        if not self.group.is_root:
            return
        with open(os.path.join(self.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def trim_metrics(self):
        """On resume, forget entries logged after the checkpoint (they will be redone)."""
        if not self.group.is_root:
            return
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
        rng = np.random.default_rng([self.config.seed, self.epoch, self.batch])
        parallel = self.group.size > 1
        with self.home:
            x = self.train_tf(to_device(images, self.home), rng,
                              rows=(self.rows.start, self.config.batch_size) if parallel else None)
            y = to_device(labels, self.home)
            self.model.train()
            logits = self.model.forward(x)
            loss = self.loss_fn.compute(logits, y)
            correct = (logits.argmax(axis=1) == y).sum()
            self.optim.zero_grad()
            self.model.backward(self.loss_fn.backward())
            self.group.average_gradients(self.model.parameters())
            self.optim.step()
        return loss, correct

    def run_eval(self, final=False):
        tf = self.eval_tf_final if final else self.eval_tf
        return evaluate(self.model, self.test_set, tf, batch_size=max(self.config.batch_size, 100),
                        limit=self.config.test_subset, group=self.group)

    def fit(self):
        args, group = self.config, self.group
        total_epochs = args.epochs
        progress = not args.no_progress and group.is_root
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
            if group.size > 1:           # every process's sums of its rows: the whole batches' figures
                sizes = np.array([p[3] for p in pending], dtype=np.float64)
                losses, corrects, sizes = group.sum(np.stack([losses * sizes, corrects, sizes]))
                losses = losses / sizes
                pending = [(step, None, None, int(n)) for (step, _, _, _), n in zip(pending, sizes)]
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

        # Ctrl-C sets self.stop_requested at any moment; the processes of a job stop only where they all
        # know it (stop: the flag as exchanged at the end of a step), or one would wait for the others forever
        stop = False
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
                imgs_since_log += len(labels) * group.size
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
                time_up = self.deadline is not None and time.monotonic() >= self.deadline
                if group.size > 1:       # clocks and Ctrl-C differ: all processes save and stop together
                    due, stop, time_up = (bool(v) for v in group.sum([bool(due), self.stop_requested, time_up]) > 0)
                else:
                    stop = self.stop_requested
                self.time_up = self.time_up or time_up
                due = due and not self.time_up              # stopping now saves anyway
                if due and self.batch < n_batches:      # an epoch's end saves anyway
                    flush()
                    self.epoch_stats["time"] += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    self.save("last")
                if stop or self._done():
                    break
            flush()
            if bar is not None:
                bar.close()
            self.epoch_stats["time"] += time.perf_counter() - t_epoch
            if self.stop_requested if group.size == 1 else stop:
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
        return self.time_up or (self.config.max_steps is not None and self.step >= self.config.max_steps)

    def end_epoch(self, total_epochs):
        st = self.epoch_stats
        seen = max(st["seen"], 1)
        record = {"type": "epoch", "epoch": self.epoch + 1, "step": self.step, "train_loss": st["loss"] / seen,
                  "train_acc": st["correct"] / seen, "lr": self.optim.lr, "time": st["time"],
                  "images_per_s": st["seen"] / max(st["time"], 1e-9)}
        evaluated = (self.epoch + 1) % self.config.eval_every == 0 or self.epoch + 1 == total_epochs
        if evaluated:
            res = self.run_eval(final=self.epoch + 1 == total_epochs)
            record.update(test_loss=res["loss"], test_top1=res["top1"], test_top5=res["top5"])
            self.last_eval = {"step": self.step, **record}
        line = (f"epoch {self.epoch + 1}/{total_epochs}  train loss {record['train_loss']:.4f} "
                f"acc {100 * record['train_acc']:.2f}%")
        if evaluated:
            line += f"  test top-1 {100 * record['test_top1']:.2f}% top-5 {100 * record['test_top5']:.2f}%"
        line += f"  lr {self.optim.lr:g}  {record['time']:.0f}s ({record['images_per_s']:.0f} img/s)"
        if self.group.is_root:
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
        if self.group.is_root:
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
        if not self.group.is_root:
            return
        plot_curves(self.history, f"AlexNet '{self.config.preset}' on {self.spec.kind}",
                    os.path.join(self.out, "curves.png"))
