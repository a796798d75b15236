"""Run folders: the --out folder checked, config.json written and read back, a trained run rebuilt."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from minidl import checkpoint
from minidl.atomic import atomic_write

from .cli import UserError
from .configs import PRESETS
from .variants import VARIANTS, variant_config
from .dataspec import DataSpec
from .devices import tower_devices
from .model import build_model


def check_writable(folder, message="--out {folder!r} is not writable ({reason}); choose another folder"):
    """Create ``folder`` and write a file in it, before any work that would write there; else a UserError,
    ``message`` with the folder and the reason filled in."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(message.format(folder=folder, reason=exc.strerror or exc)) from None


class RunFolderLock:
    """One training run writes a run folder at a time: an exclusive lock on ``<out>/.lock``.

    The lock is the kernel's (``flock``), so it goes away with the process that holds it however that
    process ends (kill -9 included): a killed run leaves a ``.lock`` file, never an obstacle. The file
    says who holds it, for the message that refuses a second writer. Readers (evaluate, predict) do
    not take it.
    """

    NAME = ".lock"

    def __init__(self, out):
        import fcntl

        self.path = os.path.join(out, self.NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            with os.fdopen(fd, "r", errors="replace") as f:
                holder = f.read(500).strip().splitlines()
            holder = holder[0] if holder else "another process"
            raise UserError(f"{out} is in use by {holder}: one training run writes a run folder at a time; wait "
                            "for it to end (or stop it), or choose another --out") from None
        os.ftruncate(fd, 0)
        command = " ".join(["python", "-m", "alexnet.train", *sys.argv[1:]])[:300].replace("\n", " ")
        os.write(fd, (f"process {os.getpid()} on {socket.gethostname()} ({command}, started "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n").encode())
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)          # closing the only descriptor drops the lock
            self.fd = None


def figures_folder(run):
    """Where a command draws its figures of ``run`` when not told where (``--out``).

    The run folder, when it is the user's own. A run stored with the project (tracked by git, as
    notebooks/data/mini-fashion-mnist is) or one the user cannot write to is only read: its figures go
    to runs/figures/<its name> in the current folder instead, so that looking at a run changes no file
    of the project.
    """
    if not os.access(run, os.W_OK) or _tracked(os.path.join(run, "config.json")):
        return os.path.join("runs", "figures", os.path.basename(os.path.normpath(os.path.abspath(run))))
    return run


def _tracked(path):
    """Whether git tracks ``path`` (False where git or a repository is not there)."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        r = subprocess.run(["git", "-C", folder, "ls-files", "--error-unmatch", name], capture_output=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def write_run_config(run_dir, config):
    """Write a run's config.json atomically."""
    with atomic_write(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def read_run_config(run_dir):
    """A run folder's config.json, checked; a UserError naming the file and the fault otherwise."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{run_dir} is not a training run (no config.json); pass the --out folder of "
                        "`python -m alexnet.train`")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{path} is damaged ({exc}); it is not the config.json that `python -m alexnet.train` "
                        "writes") from None
    fields = {f.name for f in dataclasses.fields(DataSpec)}
    problem = None
    if not isinstance(config, dict):
        problem = "not a JSON object"
    elif config.get("preset") not in PRESETS:
        problem = f"unknown preset {config.get('preset')!r}"
    elif config.get("variant", "baseline") not in VARIANTS:
        problem = f"unknown variant {config.get('variant')!r}"
    elif not isinstance(config.get("args"), dict):
        problem = "no 'args' object"
    elif not isinstance(config.get("data"), dict) or set(config["data"]) != fields:
        problem = "its 'data' entry is not a dataset description"
    else:
        try:
            DataSpec(**config["data"]).check()
        except (TypeError, ValueError) as exc:
            problem = f"its 'data' entry is wrong ({exc})"
    if problem:
        raise UserError(f"{path} is damaged: {problem}; it is not the config.json that `python -m alexnet.train` "
                        "writes")
    return config


def load_run(run_dir, which="best", backend="numpy", gpus=None):
    """Rebuild a trained run on the given backend: (model in eval mode, config dict, DataSpec)."""
    config = read_run_config(run_dir)
    ckpt = os.path.join(run_dir, "checkpoints", f"{which}.npz")
    if not os.path.exists(ckpt):
        raise UserError(f"{run_dir} has no {which} checkpoint ({ckpt}); train it first or use "
                        f"--checkpoint {'last' if which == 'best' else 'best'}")
    spec = DataSpec(**config["data"])
    cfg = variant_config(PRESETS[config["preset"]], config.get("variant", "baseline"))
    devices = tower_devices(backend, gpus, cfg.towers)
    model = build_model(cfg, num_classes=spec.num_classes, in_channels=spec.in_channels,
                        devices=devices, init=config.get("init"), seed=config.get("seed", 0))
    # only the weights are read, each checked against the model's shape before its data is read
    load_weights(model, checkpoint.load(ckpt, arrays="model", shapes=weight_shapes(model)), ckpt)
    return model.eval(), config, spec


def weight_shapes(model):
    """``{'model/<parameter>': shape}``: what a checkpoint may hold of ``model``'s weights (``checkpoint.load``
    refuses any other array, and any other shape, before reading it)."""
    return {f"model/{name}": tuple(p.shape) for name, p in model.named_parameters()}


def load_weights(model, state, path):
    """Copy a checkpoint's weights (``state['model']``) into ``model``, checked.

    A UserError names the file and what is wrong: no weights, a missing or
    unexpected array, a shape the model does not have (another run's
    checkpoint), or weights that are not all finite.
    """
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise UserError(f"{path} holds no model weights; it is not a checkpoint of `python -m alexnet.train`")
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        what = ([f"lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []) + \
               ([f"has unknown {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise UserError(f"{path} does not fit this {model.config.name} model: it {' and '.join(what)}")
    for name, p in own.items():
        value = weights[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise UserError(f"{path}: {name} is not an array of floats")
        if tuple(value.shape) != tuple(p.shape):
            raise UserError(f"{path}: {name} has shape {tuple(value.shape)} but the model's is {tuple(p.shape)}; "
                            "the checkpoint belongs to another run or preset")
        if not np.isfinite(value).all():
            raise UserError(f"{path}: {name} holds NaN or infinite values; the checkpoint is damaged")
    model.load_state_dict(weights)
