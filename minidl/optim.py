"""SGD with momentum and weight decay, exactly the paper's rule (Section 5),
and the two learning-rate schedules it mentions.

For every parameter w with gradient g, learning rate eps, momentum m and
weight decay wd:

    v <- m * v - wd * eps * w - eps * g
    w <- w + v

Parameter groups let some parameters use other settings, e.g. the original
code's biases: twice the learning rate and no weight decay::

    SGD([{'params': weights}, {'params': biases, 'lr_mult': 2.0, 'weight_decay': 0.0}], lr=0.01)
"""

from __future__ import annotations

import math

from . import kernels
from .checks import number, whole
from .backend import get_array_module, to_device
from .layers.base import Parameter


class SGD:
    """``SGD(parameters, lr, momentum=0.9, weight_decay=5e-4)``.

    ``parameters``: Parameters, or dicts ``{'params': [...], 'lr_mult': float,
    'weight_decay': float, 'momentum': float}`` (missing keys take the
    defaults). ``lr`` is the base learning rate that schedules change; a
    group's rate is ``lr * lr_mult``. The velocity of each parameter lives on
    the parameter's device.
    """

    def __init__(self, parameters, lr, momentum=0.9, weight_decay=5e-4):
        self.lr = number(lr, "SGD", "lr", low=0, low_open=True)
        self.defaults = {"lr_mult": 1.0, "momentum": float(momentum), "weight_decay": float(weight_decay)}
        self._check_group(self.defaults, "SGD")
        items = list(parameters)
        if items and isinstance(items[0], Parameter):
            items = [{"params": items}]
        self.param_groups = []
        seen = set()
        for group in items:
            if not isinstance(group, dict) or "params" not in group:
                raise ValueError("SGD: parameters must be Parameters or dicts with a 'params' key")
            unknown = set(group) - {"params", *self.defaults}
            if unknown:
                raise ValueError(f"SGD: unknown parameter-group keys {sorted(unknown)}")
            self._check_group(group, f"SGD group {len(self.param_groups)}")
            params = list(group["params"])
            for p in params:
                if not isinstance(p, Parameter):
                    raise ValueError(f"SGD: expected Parameter objects, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError("SGD: a parameter appears in more than one group")
                seen.add(id(p))
            self.param_groups.append({**self.defaults, **{k: v for k, v in group.items() if k != "params"},
                                      "params": params})
        if not seen:        # zero_grad and step would do nothing, silently
            raise ValueError("SGD: no parameters to update: the list is empty (a model without parameters, or a "
                             "generator such as model.parameters() that was already used up?)")
        self.velocity = {}  # id(param) -> array

    @staticmethod
    def _check_group(group, who):
        """lr_mult >= 0 (0 freezes), momentum in [0, 1), weight_decay >= 0: finite numbers."""
        for key, kw in (("lr_mult", dict(low=0)), ("momentum", dict(low=0, high=1, high_open=True)),
                        ("weight_decay", dict(low=0))):
            if key in group:
                number(group[key], who, key, **kw)

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p

    def zero_grad(self):
        for _, p in self._params():
            p.grad = None

    def step(self):
        """One update of every parameter that has a gradient."""
        for group, p in self._params():
            if p.grad is None or not p.requires_grad:
                continue
            lr = self.lr * group["lr_mult"]
            with p.device:  # a GPU kernel must run on the device that holds the arrays
                v = self.velocity.get(id(p))
                if v is None:
                    v = get_array_module(p.data).zeros_like(p.data)
                    self.velocity[id(p)] = v
                # v <- m * v - wd * lr * w - lr * g;  w <- w + v
                kernels.momentum_update(p.data, p.grad, v, lr, group["momentum"], group["weight_decay"])

    # -- checkpointing: plain numbers and arrays, no pickle ----------------
    def state_dict(self):
        """``{'lr': float, 'velocity': {'<group>.<index>': array}}`` (arrays are not copied)."""
        vel = {}
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if id(p) in self.velocity:
                    vel[f"{gi}.{pi}"] = self.velocity[id(p)]
        return {"lr": self.lr, "velocity": vel}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("velocity"), dict):
            raise ValueError("SGD.load_state_dict: expected {'lr': float, 'velocity': {...}}")
        lr = state.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"SGD.load_state_dict: lr must be a positive number, got {lr!r}")
        self.lr = float(lr)
        self.velocity = {}
        for key, arr in state["velocity"].items():
            try:
                gi, pi = (int(s) for s in key.split("."))
                p = self.param_groups[gi]["params"][pi]
            except (ValueError, IndexError):
                raise ValueError(f"SGD.load_state_dict: velocity entry {key!r} matches no parameter of this "
                                 "optimizer (was it saved for another model?)") from None
            if tuple(arr.shape) != tuple(p.shape):
                raise ValueError(f"SGD.load_state_dict: velocity {key} has shape {tuple(arr.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            if getattr(arr, "dtype", None) is None or arr.dtype.kind != "f" or not bool(
                    get_array_module(arr).isfinite(arr).all()):
                raise ValueError(f"SGD.load_state_dict: velocity {key} is not an array of finite floats (NaN or inf, "
                                 "or not floats): the checkpoint is damaged")
            arr = to_device(arr, p.device)
            with p.device:                  # the velocity lives where its parameter does
                self.velocity[id(p)] = arr.astype(p.dtype, copy=True)


class StepLR:
    """Divide the learning rate by ``1/gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer = optimizer
        self.step_size = whole(step_size, "StepLR", "step_size", low=1)
        self.gamma = number(gamma, "StepLR", "gamma", low=0, high=1, low_open=True)
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self, metric=None):
        """Call once per epoch (the metric is ignored)."""
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)
        return self.optimizer.lr

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        self.epoch, self.base_lr = int(state["epoch"]), float(state["base_lr"])


class ReduceLROnPlateau:
    """The paper's schedule: divide the rate by 10 when the validation error stops improving.

    ``step(error)`` once per evaluation; after ``patience`` evaluations with no
    improvement larger than ``threshold`` (relative), the rate is multiplied
    by ``factor``, at most ``max_reductions`` times (the paper: three).
    """

    def __init__(self, optimizer, factor=0.1, patience=1, threshold=1e-3, max_reductions=3):
        who = "ReduceLROnPlateau"
        self.optimizer = optimizer
        self.factor = number(factor, who, "factor", low=0, high=1, low_open=True, high_open=True)
        self.patience = whole(patience, who, "patience", low=0)
        self.threshold = number(threshold, who, "threshold", low=0)
        self.max_reductions = whole(max_reductions, who, "max_reductions", low=0)
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def step(self, metric):
        metric = number(metric, "ReduceLROnPlateau.step", "metric")       # a NaN error is no result
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience and self.reductions < self.max_reductions:
                self.optimizer.lr *= self.factor
                self.reductions += 1
                self.bad_epochs = 0
        return self.optimizer.lr

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def load_state_dict(self, state):
        self.best = float(state["best"])
        self.bad_epochs, self.reductions = int(state["bad_epochs"]), int(state["reductions"])
