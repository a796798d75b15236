"""The training loop as the textbook writes it, and the pieces a long run adds around it.

``train`` is the whole algorithm: for each epoch, for each batch, augment,
forward, loss, backward, step; at the end of the epoch, measure the error on
the validation split and let the schedule see it. ``alexnet.trainer.Trainer``
runs exactly this loop (``Trainer.train_step`` is its inner body, and a test
holds the two to the same weights, bit for bit), with what a run of hours
needs around it, each piece here and tested on its own:

- ``PendingResults``: the losses of several steps read back from the GPU in one
  host synchronisation;
- ``Clock``: ``--max-minutes`` and ``--checkpoint-minutes``;
- ``agree``: under MPI, the processes stop and save at the same step;
- ``MetricsLog``: metrics.jsonl, and on resume the records after the checkpoint dropped.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from minidl.atomic import atomic_write
from minidl.backend import asnumpy, get_array_module

from .cli import UserError


def train(model, loss_fn, optim, schedule, loader, augment, validate, epochs, seed=0):
    """Train ``model`` for ``epochs`` epochs; returns the validation error after each.

    ``loader.batches(epoch)`` yields (images, labels); ``augment(images, rng)`` gives the model's input;
    ``validate(model)`` returns the top-1 error on the validation split, which the ``schedule`` sees.
    """
    errors = []
    for epoch in range(epochs):
        for batch, (images, labels) in enumerate(loader.batches(epoch)):
            rng = np.random.default_rng([seed, epoch, batch])   # this batch's crops, flips and colour noise
            x = augment(images, rng)
            model.train()
            logits = model.forward(x)                           # (N, classes)
            loss_fn.compute(logits, labels)                     # the mean cross-entropy
            optim.zero_grad()
            model.backward(loss_fn.backward())                  # every parameter's gradient
            optim.step()                                        # v = 0.9 v - 0.0005 lr w - lr g; w += v
        errors.append(validate(model))
        schedule.step(errors[-1])                               # the plateau rule reads it; a step ignores it
    return errors


class PendingResults:
    """Each step's loss and correct count stay on the device until they are needed, then come back
    together: one host synchronisation per logged line instead of one per step."""

    def __init__(self):
        self.steps = []             # (step, loss array, correct array, batch size)

    def add(self, step, loss, correct, size):
        self.steps.append((step, loss, correct, size))

    def __len__(self):
        return len(self.steps)

    def collect(self, home, group):
        """[(step, loss, correct, size)] as numbers, summed over the processes of a job; emptied."""
        pending, self.steps = self.steps, []
        if not pending:
            return []
        with home:
            xp = get_array_module(pending[0][1])
            both = xp.stack([xp.stack([p[1] for p in pending]).astype(xp.float64),
                             xp.stack([p[2] for p in pending]).astype(xp.float64)])
            losses, corrects = asnumpy(both)
        sizes = np.array([p[3] for p in pending], dtype=np.float64)
        if group.size > 1:           # every process's sums of its rows: the whole batches' figures
            losses, corrects, sizes = group.sum(np.stack([losses * sizes, corrects, sizes]))
            losses = losses / sizes
        return [(p[0], float(loss), int(c), int(n)) for p, loss, c, n in zip(pending, losses, corrects, sizes)]


class Clock:
    """When to stop (``--max-minutes``, counted from ``deadline``) and when to save (``--checkpoint-minutes``)."""

    def __init__(self, checkpoint_minutes=0.0, deadline=None):
        self.checkpoint_minutes, self.deadline = checkpoint_minutes, deadline
        self.saved_at = time.monotonic()

    def saved(self):
        self.saved_at = time.monotonic()

    def checkpoint_due(self):
        return bool(self.checkpoint_minutes) and time.monotonic() - self.saved_at >= 60 * self.checkpoint_minutes

    def time_up(self):
        return self.deadline is not None and time.monotonic() >= self.deadline


def agree(group, *flags):
    """Each flag true for every process if it is true for any: the processes of a job save and stop together
    (their clocks, and the moment a Ctrl-C lands, differ). One exchange per step; none in one process."""
    if group.size == 1:
        return tuple(bool(f) for f in flags)
    return tuple(bool(v) for v in group.sum([bool(f) for f in flags]) > 0)


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step, epoch and evaluation (process 0 alone writes)."""

    def __init__(self, out, writer=True):
        self.path, self.writer = os.path.join(out, "metrics.jsonl"), writer

    def start(self):
        if self.writer:
            open(self.path, "w").close()

    def write(self, record):
        if self.writer:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def records(self):
        """Every record written (a last line cut short by a kill left out)."""
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        out = []
        for number, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError):
                if line.strip() and number < len(lines):
                    raise UserError(f"{self.path} line {number} is not a metrics record") from None
        return out

    def trim(self, step):
        """On resume: forget the records logged after ``step`` (they will be redone); the epoch records kept."""
        if not self.writer or not os.path.lexists(self.path):
            return []
        if not os.path.isfile(self.path):
            raise UserError(f"{self.path} is not a regular file; move it away to resume")
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                if number >= len(lines) - 1:
                    continue                    # the last line, cut short by a kill
                rec = None
            if not isinstance(rec, dict) or not isinstance(rec.get("step", 0), int):
                raise UserError(f"{self.path} line {number} is not a metrics record "
                                f"({line[:60].decode('utf-8', 'backslashreplace')}); remove that line to resume")
            if rec.get("step", 0) <= step:
                kept.append(rec)
        with atomic_write(self.path, "w") as f:
            for rec in kept:
                f.write(json.dumps(rec) + "\n")
        return [r for r in kept if r.get("type") == "epoch"]
