"""Every setting of a training run, declared once: ``TrainConfig``.

    from alexnet.settings import TrainConfig
    config = TrainConfig(preset="mini", epochs=2, out="runs/try")    # from Python
    config = TrainConfig.from_saved(saved_args, where)                # from a run's config.json ('args')
    python -m alexnet.train --epochs 2 --out runs/try                 # from the command line

Each field says its flag's type (a parser that also checks the value), its
help, and what ``--resume`` does with it. ``alexnet.train`` builds its
command line from these fields. A field left at None is the preset's: its
recipe in ``alexnet.configs`` fills it when the config is ``resolved()``.
``check()`` applies every rule, each written once, and raises
``ConfigError``: a ``UserError``, so the command line says it in one line.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from .cli import (UserError, bounded_int, momentum_float, nonneg_float, nonneg_int, positive_float, positive_int,
                  preset_names, user_path)
from .configs import PRESETS, get_config
from .model import INITS
from .variants import VARIANTS, variant_config


class ConfigError(UserError):
    """A setting, or a combination of settings, that cannot be trained with."""


# what --resume does with a setting: kept from the run (fixed), changeable from the checkpoint's step on,
# free to differ (it only steers where the run writes, what it prints, how it evaluates, which device), or
# this command's alone (never saved for the next one)
FIXED, CHANGEABLE, FREE, COMMAND = "fixed", "changeable", "free", "command"


def _setting(default=None, help="", type=None, choices=None, resume=FIXED, metavar=None):
    return field(default=default, metadata=dict(help=help, type=type, choices=choices, resume=resume,
                                                metavar=metavar))


@dataclass
class TrainConfig:
    preset: str = _setting("mini", "network preset (default: mini)", choices=preset_names)
    data: str = _setting("fashion-mnist", "'fashion-mnist' (default), a folder made by alexnet.prepare, or an "
                         "ImageNet-style folder", type=user_path)
    data_dir: str | None = _setting(None, "where the Fashion-MNIST .gz files are (searched otherwise)",
                                    type=user_path, resume=FREE)
    backend: str = _setting("numpy", choices=lambda: ["numpy", "cupy"], resume=FREE)
    gpus: str | None = _setting(None, "with --backend cupy: the GPU of each tower, e.g. 0,1 (0,0: both on GPU 0)",
                                type=str, resume=FREE)
    epochs: int | None = _setting(None, "default: the preset's (8 for mini, 90 otherwise)", positive_int,
                                  resume=CHANGEABLE)
    batch_size: int | None = _setting(None, "default: the preset's (64 for mini, the paper's 128 otherwise)",
                                      positive_int)
    lr: float | None = _setting(None, "default: the preset's (0.02 for mini, the paper's 0.01 otherwise)",
                                positive_float, resume=CHANGEABLE)
    momentum: float = _setting(0.9, "in [0, 1) (default 0.9)", momentum_float)
    weight_decay: float = _setting(5e-4, type=nonneg_float)
    lr_schedule: str | None = _setting(None, "plateau: divide by 10 when the validation error stops improving "
                                       "(the paper); step: every --lr-step epochs (default for mini)",
                                       choices=lambda: ["plateau", "step"], resume=CHANGEABLE)
    lr_step: int | None = _setting(None, "epochs between divisions with --lr-schedule step (default: 6 for mini, "
                                   "else epochs/3)", positive_int, resume=CHANGEABLE)
    # dropout layers draw from seed * 1000 + their place, kept within the 64-bit range a checkpoint stores
    seed: int = _setting(0, "0 to 2**32 - 1 (default 0)", type=bounded_int(0, 2 ** 32 - 1))
    out: str | None = _setting(None, "run folder (default: runs/<preset>-<data>)", type=user_path, resume=FREE)
    resume: bool = _setting(False, "continue the run in --out from its last checkpoint, with the settings it was "
                            "started with (config.json); from the checkpoint's step on you may change {changeable} "
                            "(each change is printed and logged); the other training settings are fixed by the "
                            "checkpoint", resume=COMMAND)
    eval_every: int = _setting(1, "evaluate on the validation and test splits every N epochs", positive_int,
                               resume=FREE)
    ten_crop: bool = _setting(False, "evaluate with ten crops per image (the paper's testing)", resume=FREE)
    max_steps: int | None = _setting(None, "stop after this many steps in all (quick runs)", positive_int,
                                     resume=CHANGEABLE)
    max_minutes: float | None = _setting(None, "stop training once the command has run this many minutes, start-up "
                                         "included, then evaluate and save as at --max-steps (--resume continues "
                                         "the run)", positive_float, resume=COMMAND)
    train_subset: int | None = _setting(None, "train on a fixed random subset of N images", positive_int)
    test_subset: int | None = _setting(None, "evaluate on the first N test images only", positive_int, resume=FREE)
    val_size: int | None = _setting(None, "hold out N training images, class-balanced and the same for every seed, "
                                    "as the validation split that every decision is made on (the plateau "
                                    "schedule, best.npz); the test split is only reported (default: 5000 for "
                                    "Fashion-MNIST, a folder's own val/ when it also has test/, else a tenth of "
                                    "the training images; 0: none)", nonneg_int)
    init: str | None = _setting(None, "initialisation (default: the preset's)", choices=lambda: list(INITS))
    variant: str = _setting("baseline", "the preset with one of the paper's ideas taken out, for ablations "
                            "(alexnet.variants): " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()),
                            choices=lambda: list(VARIANTS))
    log_every: int = _setting(50, "steps between metrics.jsonl entries", positive_int, resume=FREE)
    checkpoint_every: int | None = _setting(None, "also save last.npz every N steps", positive_int, resume=FREE)
    checkpoint_minutes: float = _setting(5.0, "also save last.npz when this many minutes have passed since the last "
                                         "save (default 5; 0: off). last.npz is also saved at every epoch's end and "
                                         "on Ctrl-C, so a killed run loses at most the steps since the last save: "
                                         "--resume continues from there", nonneg_float, resume=FREE)
    no_progress: bool = _setting(False, "no progress bar", resume=FREE)
    init_from: str | None = _setting(None, "start from trained weights: a torchvision state dict "
                                     "(.pth/.safetensors/.npz), bvlc_alexnet.npy, or a minidl checkpoint (or run "
                                     "folder) of the same preset", type=user_path, metavar="FILE")
    format: str | None = _setting(None, "format of --init-from (default: from the file name); it sets the preset: "
                                  "torchvision -> 'torchvision', caffe -> 'bvlc', run -> the checkpoint's",
                                  choices=lambda: ["torchvision", "caffe", "run"])
    train_layers: str | None = _setting(None, "train only these stages, e.g. fc6,fc7,fc8; every other parameter is "
                                        "frozen (default: all)", type=str, metavar="STAGES")

    # -- the preset's recipe, once ------------------------------------------------------------
    def resolved(self) -> TrainConfig:
        """A copy with every setting left at None that the preset's recipe gives filled in (idempotent)."""
        if self.preset not in PRESETS:
            return self                     # check() says what is wrong with it
        recipe = PRESETS[self.preset].recipe
        epochs = self.epochs if self.epochs is not None else recipe.epochs
        schedule = self.lr_schedule or recipe.lr_schedule
        lr_step = self.lr_step
        if schedule == "step" and lr_step is None:
            lr_step = recipe.lr_step or max(1, math.ceil(epochs / 3))
        return replace(self, epochs=epochs, lr_schedule=schedule, lr_step=lr_step,
                       batch_size=self.batch_size if self.batch_size is not None else recipe.batch_size,
                       lr=self.lr if self.lr is not None else recipe.lr)

    def network(self):
        """The network these settings train: the preset's, with the variant's change."""
        return variant_config(get_config(self.preset), self.variant)

    # -- the rules, each once -------------------------------------------------------------------
    def check(self, processes=1) -> TrainConfig:
        """Raise ConfigError for the first setting that cannot be right; ``processes``: of a data-parallel job."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            _check_value(f, value)
        if self.val_size == 0 and self.lr_schedule == "plateau":
            raise ConfigError("--lr-schedule plateau divides the rate when the validation error stops improving; "
                              "--val-size 0 leaves no validation split: give a --val-size, or --lr-schedule step")
        if self.lr_step is not None and self.lr_schedule not in (None, "step"):
            raise ConfigError(f"--lr-step applies to --lr-schedule step, not {self.lr_schedule} (the schedule of "
                              f"preset '{self.preset}' unless --lr-schedule says otherwise)")
        try:
            self.network()
        except ValueError as exc:
            raise ConfigError(f"--variant {self.variant}: {exc}") from None
        if self.batch_size is not None and self.batch_size % processes:
            raise ConfigError(f"--batch-size {self.batch_size} does not divide among {processes} processes; give a "
                              f"multiple of {processes} (each process takes an equal share of every batch)")
        return self

    # -- from and to a run's config.json --------------------------------------------------------
    def saved(self) -> dict:
        """The settings a run folder keeps (config.json 'args')."""
        return asdict(self)

    @classmethod
    def from_saved(cls, saved, where="config.json") -> TrainConfig:
        """The settings in a run's config.json ('args'), each checked as the command line checks it."""
        if not isinstance(saved, dict):
            raise ConfigError(f"{where} is damaged: its settings are not an object")
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in saved.items():
            f = known.get(key)
            if f is None or value is None or f.metadata["resume"] == COMMAND:
                continue
            try:
                values[key] = _check_value(f, value, text_allowed=True)
            except ConfigError as exc:
                raise ConfigError(f"{where} is damaged: its settings do not parse ({exc})") from None
        values.setdefault("val_size", 0 if "val_size" not in saved else None)    # runs from before it held none out
        return cls(**values)


def flag(name):
    return "--" + name.replace("_", "-")


def _check_value(f, value, text_allowed=False):
    """``value`` for field ``f``, checked by its flag's own parser (numbers from config.json may be text, as
    on the command line); ConfigError saying which setting and why."""
    m = f.metadata
    if isinstance(f.default, bool):
        if value not in (True, False):
            raise ConfigError(f"{flag(f.name)} must be true or false, got {value!r}")
        return value
    if m["choices"] is not None or m["type"] in (str, user_path):
        if not isinstance(value, str):
            raise ConfigError(f"{flag(f.name)}: expected text, got {value!r}")
        if m["choices"] is not None and value not in m["choices"]():
            raise ConfigError(f"{flag(f.name)}: invalid choice: {value!r} (choose from "
                              f"{', '.join(repr(o) for o in m['choices']())})")
        if m["type"] is user_path:
            try:
                return user_path(value)
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"{flag(f.name)}: {exc}") from None
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (isinstance(value, str)
                                                                              and not text_allowed):
        raise ConfigError(f"{flag(f.name)}: expected a number, got {value!r}")
    try:
        return m["type"](str(value))
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{flag(f.name)}: {exc}") from None


def add_arguments(parser):
    """The command line of ``python -m alexnet.train``: one flag per TrainConfig field."""
    changeable = ", ".join(flag(f.name) for f in fields(TrainConfig) if f.metadata["resume"] == CHANGEABLE)
    for f in fields(TrainConfig):
        m = f.metadata
        help = m["help"].replace("{changeable}", changeable) or None
        if isinstance(f.default, bool):
            parser.add_argument(flag(f.name), action="store_true", help=help)
            continue
        kwargs = dict(default=f.default if f.default is not MISSING else None, help=help, metavar=m["metavar"])
        if m["choices"] is not None:
            kwargs["choices"] = m["choices"]()
        else:
            kwargs["type"] = m["type"]
        parser.add_argument(flag(f.name), **kwargs)
    return parser


def names(role):
    """The settings that --resume treats as ``role`` (FIXED, CHANGEABLE, FREE or COMMAND)."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["resume"] == role)


__all__ = ["TrainConfig", "ConfigError", "add_arguments", "names", "flag"]
