"""A training run: ``Trainer`` runs the training loop of ``alexnet.loop`` over a run's data and keeps its folder.

It writes metrics.jsonl (one JSON object per logged step, per epoch and per
evaluation), checkpoints/last.npz and best.npz (weights, optimizer, schedule,
counters, random state; written atomically) and curves.png, and restores a
checkpoint bit for bit: the data order depends only on (seed, epoch), the
augmentation of a batch only on (seed, epoch, batch), and the dropout masks
on counters saved in the checkpoint. ``python -m alexnet.train`` is its
command line.

Every decision is made on the validation split, held out of the training
images: the plateau schedule's, and which checkpoint is best.npz. The test
split is evaluated beside it and only reported.

Under MPI (``group``: a minidl.distributed group of K processes) each process
trains on rows [r B/K, (r+1) B/K) of every global batch of B, with the random
numbers those rows get in one process; the gradients are averaged over the
processes before every update, so all replicas take the same step, and only
process 0 writes and prints.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from minidl import SGD, ReduceLROnPlateau, SoftmaxCrossEntropy, StepLR, checkpoint
from minidl.backend import get_array_module, to_device
from minidl.data import DataLoader
from minidl.distributed import Group, rows

from .cli import UserError
from .dataspec import DataSpec, make_transforms, open_splits
from .evaluate import evaluate
from .finetune import init_finetune
from .loop import Clock, MetricsLog, PendingResults, agree
from .model import build_model
from .plots import plot_curves
from .runs import load_weights, weight_shapes
from .settings import ConfigError
from .variants import augments


class NonFiniteLoss(Exception):
    """args: (step, what) -- what became NaN or infinite: 'loss' or 'weights'."""


def _counter(values, key, path):
    """A progress counter from a checkpoint: a whole number >= 0, nothing else (2.5 or -3 would make the
    run something other than the run it claims to continue)."""
    v = values[key]
    if type(v) is not int or v < 0 or v >= 2 ** 62:
        raise UserError(f"{path} is damaged: its progress counter {key} is {v!r}, not a whole number from 0 to 2**62")
    return v


def _finite(v, key, path):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"{path} is damaged: {key} is {v!r}, not a finite number")
    return float(v)


def _percent(v, key, path, low=0.0):
    v = _finite(v, key, path)
    if not low <= v <= 100.0:
        raise UserError(f"{path} is damaged: {key} is {v!r}, not a percentage")
    return v


class _LogProgress:
    """The progress bar's stand-in where standard error is not a terminal (a log file, a pipe): a line on
    standard output every LOG_PROGRESS_SECONDS within an epoch; the epoch's own line says the rest."""

    def __init__(self, total, done, desc):
        self.total, self.done, self.desc = total, done, desc
        self.postfix, self.last = {}, time.monotonic()

    def set_postfix(self, refresh=False, **values):
        self.postfix = values

    def update(self, n=1):
        self.done += n
        if time.monotonic() - self.last >= LOG_PROGRESS_SECONDS and self.done < self.total:
            self.last = time.monotonic()
            figures = "".join(f"  {v} img/s" if k == "ips" else f"  {k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc}  batch {self.done}/{self.total}{figures}", flush=True)

    def close(self):
        pass


LOG_PROGRESS_SECONDS = 180


class Trainer:
    """A training run: ``Trainer(config, spec, devices).fit()``, with ``config`` an ``alexnet.settings.TrainConfig``."""

    def __init__(self, config, spec: DataSpec, devices, group=None):
        self.group = group = Group() if group is None else group
        self.config = config = config.resolved().check(processes=group.size)
        self.spec = spec
        cfg = config.network()
        splits = open_splits(spec, config.val_size, config.train_subset, config.seed)
        self.train_set, self.val_set, self.val_indices, self.test_set = (splits.train, splits.val,
                                                                         splits.val_indices, splits.test)
        n_train = len(self.train_set) if splits.train_indices is None else len(splits.train_indices)
        if config.batch_size > n_train:
            raise UserError(f"--batch-size {config.batch_size} is larger than the training set "
                            f"({n_train} images); use a smaller batch")
        if self.val_set is None and config.lr_schedule == "plateau":
            raise ConfigError("--lr-schedule plateau divides the rate when the validation error stops improving, "
                              "but this run has no validation split (--val-size 0, or too few images to hold any "
                              "out): give a --val-size or --lr-schedule step")
        self.loader = DataLoader(self.train_set, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                                 indices=splits.train_indices, prefetch=2, shard=(group.rank, group.size))
        self.rows = rows(config.batch_size, group.rank, group.size)     # this process's rows of every batch
        self.model = build_model(cfg, num_classes=spec.num_classes, in_channels=spec.in_channels,
                                 devices=devices, init=config.init, seed=config.seed)
        self.model.set_batch_offset(self.rows.start)       # dropout draws the masks of this process's rows
        init_finetune(self.model, spec, config.init_from, config.format, config.train_layers,
                      load=not config.resume)          # may set the input normalisation of the weights
        self.train_tf, self.eval_tf = make_transforms(spec, cfg.input_size, augment=augments(config.variant))
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
        self.best_top1, self.last_eval = -1.0, None   # best validation top-1, and the last evaluation
        self.epoch_stats = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self.history = []          # per-epoch metrics, for curves.png
        self.stop_requested = False                   # set by Ctrl-C, at any moment
        self.clock = Clock(config.checkpoint_minutes)
        self.time_up = False
        self.out = config.out
        self.ckpt_dir = os.path.join(self.out, "checkpoints")
        self.metrics = MetricsLog(self.out, writer=group.is_root)
        self.pending = PendingResults()

    @property
    def deadline(self):
        """--max-minutes: the time.monotonic() at which training stops (None: no limit)."""
        return self.clock.deadline

    @deadline.setter
    def deadline(self, value):
        self.clock.deadline = value

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
                "seed": self.config.seed, "batch_size": self.config.batch_size,
                "train_subset": self.config.train_subset, "val_size": self.config.val_size}

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
        self.clock.saved()
        if not self.group.is_root:
            return None
        return checkpoint.save(os.path.join(self.ckpt_dir, f"{name}.npz"), self.state())

    def _checkpoint_shapes(self):
        """The arrays a checkpoint of this run holds and their shapes: weights and velocities (checkpoint.load
        refuses any other before reading it)."""
        shapes = weight_shapes(self.model)
        for gi, group in enumerate(self.optim.param_groups):
            shapes.update({f"optim/velocity/{gi}.{pi}": p.shape for pi, p in enumerate(group["params"])})
        return shapes

    def restore(self, path, changed=()):
        """Continue from a checkpoint; ``changed``: the settings --resume may change (alexnet.settings), given anew.

        A new --lr is the rate from this step on; with a new --lr, --lr-step or
        --lr-schedule the step schedule counts its epochs from here.
        """
        state = checkpoint.load(path, shapes=self._checkpoint_shapes())
        run = state.get("run")
        mine = self.run_identity()
        if not isinstance(run, dict):
            raise UserError(f"{path} is not a checkpoint of `python -m alexnet.train` (no run settings)")
        run = {"val_size": 0, **run}           # checkpoints from before the validation split held none out
        if run != mine:
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
            self.epoch, self.batch, self.step = (_counter(prog, k, path) for k in ("epoch", "batch", "step"))
            self.best_top1 = _percent(prog["best_top1"], "best_top1", path, low=-1.0)
            stats = prog["epoch_stats"]
            self.epoch_stats = {"loss": _finite(stats["loss"], "epoch_stats.loss", path),
                                "correct": _counter(stats, "correct", path), "seen": _counter(stats, "seen", path),
                                "time": _finite(stats["time"], "epoch_stats.time", path)}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path} is damaged: its training state does not load ({type(exc).__name__}: {exc})") \
                from None
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
        self.metrics.write(record)

    def trim_metrics(self):
        """On resume, forget entries logged after the checkpoint (they will be redone)."""
        self.history = self.metrics.trim(self.step)

    # -- the loop (alexnet.loop.train, with a long run's pieces around it) ----------------------
    def train_step(self, images, labels):
        """One step of the loop: augment, forward, loss, backward, update. Returns (loss, correct) as arrays
        on the first device, not read back (no host synchronisation)."""
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

    def fit(self):
        """Train to the last epoch, --max-steps or --max-minutes; 'done', or 'interrupted' after Ctrl-C."""
        c = self.config
        self._window = [time.perf_counter(), 0]        # the time and images since the last step record
        while self.epoch < c.epochs and not self._done():
            bar = self._progress_bar()
            t_epoch = time.perf_counter()
            stop = False
            for images, labels in self.loader.batches(self.epoch, start=self.batch):
                loss, correct = self.train_step(images, labels)
                self.step += 1
                self.batch += 1
                self.pending.add(self.step, loss, correct, len(labels))
                self._after_step(bar)
                # the clock, Ctrl-C and periodic checkpoints, agreed by every process of a job
                due = ((c.checkpoint_every and self.step % c.checkpoint_every == 0) or self.clock.checkpoint_due())
                due, stop, time_up = agree(self.group, due, self.stop_requested, self.clock.time_up())
                self.time_up = self.time_up or time_up
                if due and not self.time_up and self.batch < len(self.loader):   # an epoch's end saves anyway
                    self._collect()
                    self.epoch_stats["time"] += time.perf_counter() - t_epoch
                    t_epoch = time.perf_counter()
                    self.save("last")
                if stop or self._done():
                    break
            self._collect()
            if bar is not None:
                bar.close()
            self.epoch_stats["time"] += time.perf_counter() - t_epoch
            if stop:
                self.save("last")
                return "interrupted"
            if self.batch >= len(self.loader):
                self.end_epoch()
            elif self._done():
                self.save("last")
        if self.last_eval is None or self.last_eval.get("step") != self.step:
            self.final_eval()
        return "done"

    def _done(self):
        return self.time_up or (self.config.max_steps is not None and self.step >= self.config.max_steps)

    # -- the pieces around the loop: results, progress, evaluation ---------------------------------
    def _collect(self):
        """Read back the pending steps' results (one host synchronisation) into the epoch's figures."""
        results = self.pending.collect(self.home, self.group)
        for step, loss, correct, size in results:
            if not np.isfinite(loss):
                raise NonFiniteLoss(step, "loss")
            self.epoch_stats["loss"] += loss * size
            self.epoch_stats["correct"] += correct
            self.epoch_stats["seen"] += size
        return results

    def _progress_bar(self):
        if self.config.no_progress or not self.group.is_root:
            return None
        if not sys.stderr.isatty():         # a log file: a line now and then, not a carriage return per batch
            return _LogProgress(len(self.loader), self.batch, f"epoch {self.epoch + 1}/{self.config.epochs}")
        from tqdm import tqdm

        return tqdm(total=len(self.loader), initial=self.batch, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                    unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)

    def _after_step(self, bar):
        """The step's log record every --log-every steps (one host synchronisation for all pending steps), and
        the progress bar."""
        c, n_batches = self.config, len(self.loader)
        self._window[1] += self.pending.steps[-1][3] * self.group.size
        t_log, images = self._window
        on_host = get_array_module(self.pending.steps[-1][1]) is np
        if self.step % c.log_every == 0 or on_host or self.batch == n_batches or self._done():
            results = self._collect()
            if bar is not None and results:
                _, loss, correct, size = results[-1]
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{100 * correct / size:.1f}%",
                                ips=f"{images / max(time.perf_counter() - t_log, 1e-9):.0f}", refresh=False)
        if self.step % c.log_every == 0:
            st, dt = self.epoch_stats, time.perf_counter() - t_log
            self.log({"type": "step", "step": self.step, "epoch": self.epoch + self.batch / n_batches,
                      "loss": st["loss"] / max(st["seen"], 1), "acc": st["correct"] / max(st["seen"], 1),
                      "lr": self.optim.lr, "images_per_s": images / max(dt, 1e-9)})
            self._window = [time.perf_counter(), 0]
        if bar is not None:
            bar.update(1)

    def run_eval(self, final=False):
        """The validation split (for decisions) and the test split (reported only): {'val': ..., 'test': ...}."""
        tf = self.eval_tf_final if final else self.eval_tf
        size = max(self.config.batch_size, 100)
        val = None if self.val_set is None else evaluate(self.model, self.val_set, tf, batch_size=size,
                                                         indices=self.val_indices, group=self.group)
        test = evaluate(self.model, self.test_set, tf, batch_size=size, limit=self.config.test_subset,
                        group=self.group)
        return {"val": val, "test": test}

    @staticmethod
    def _figures(res):
        out = {}
        for split in ("val", "test"):
            if res[split] is not None:
                out.update({f"{split}_loss": res[split]["loss"], f"{split}_top1": res[split]["top1"],
                            f"{split}_top5": res[split]["top5"]})
        return out

    @staticmethod
    def _said(record):
        val = f"val top-1 {100 * record['val_top1']:.2f}%  " if "val_top1" in record else ""
        return (val + f"test top-1 {100 * record['test_top1']:.2f}% top-5 {100 * record['test_top5']:.2f}%"
                + (" (reported, not used)" if val else ""))

    def _keep_best(self, record):
        """best.npz is the checkpoint of the best validation top-1 (a run without a validation split has none)."""
        improved = "val_top1" in record and record["val_top1"] > self.best_top1
        if improved:
            self.best_top1 = record["val_top1"]
        self.save("last")
        if improved:
            self.save("best")

    def end_epoch(self):
        st = self.epoch_stats
        seen = max(st["seen"], 1)
        last_epoch = self.epoch + 1 == self.config.epochs
        record = {"type": "epoch", "epoch": self.epoch + 1, "step": self.step, "train_loss": st["loss"] / seen,
                  "train_acc": st["correct"] / seen, "lr": self.optim.lr, "time": st["time"],
                  "images_per_s": st["seen"] / max(st["time"], 1e-9)}
        evaluated = (self.epoch + 1) % self.config.eval_every == 0 or last_epoch
        if evaluated:
            record.update(self._figures(self.run_eval(final=last_epoch)))
            self.last_eval = {"step": self.step, **record}
        line = (f"epoch {self.epoch + 1}/{self.config.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {100 * record['train_acc']:.2f}%")
        if evaluated:
            line += "  " + self._said(record)
        line += f"  lr {self.optim.lr:g}  {record['time']:.0f}s ({record['images_per_s']:.0f} img/s)"
        if self.group.is_root:
            print(line, flush=True)
        # the schedule sees this epoch's validation error; the epoch is then complete
        if isinstance(self.sched, ReduceLROnPlateau):
            if evaluated:
                self.sched.step(1 - record["val_top1"])
        else:
            self.sched.step()
        self.epoch += 1
        self.batch = 0
        self.epoch_stats = {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}
        self.log(record)
        self.history.append(record)
        self._keep_best(record if evaluated else {})
        self.plot()

    def final_eval(self):
        """A run stopped mid-epoch (--max-steps, --max-minutes): evaluate what it has."""
        record = {"type": "eval", "epoch": self.epoch + self.batch / len(self.loader), "step": self.step,
                  **self._figures(self.run_eval(final=True))}
        self.log(record)
        if self.group.is_root:
            print(f"step {self.step}: {self._said(record)} (loss {record['test_loss']:.4f})", flush=True)
        self._keep_best(record)
        self.last_eval = record

    def plot(self):
        if not self.group.is_root:
            return
        plot_curves(self.history, f"AlexNet '{self.config.preset}' on {self.spec.kind}",
                    os.path.join(self.out, "curves.png"))
