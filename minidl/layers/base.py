"""The layer contract: Parameter, Layer and Sequential.

Every layer is a class with an explicit ``forward(x) -> y`` that caches what
its backward needs, and a hand-written ``backward(dy) -> dx`` that *adds* the
gradient of the loss to each parameter's ``.grad`` and returns the gradient of
its input. Nothing is recorded behind your back: there is no autograd tape.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..backend import as_device, get_device, is_cupy_array, to_device


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, device, dtype).

    ``grad`` is None until a backward pass fills it; backward passes add to it
    (so several micro-batches can be accumulated) and ``zero_grad`` clears it.
    ``requires_grad=False`` freezes the parameter: layers then skip computing
    its gradient.

    A parameter lives on one ``device``, fixed when it is made and changed only
    by ``to(device)``: giving it ``data`` or a ``grad`` from another device (or
    a NumPy array for a GPU parameter) raises at once, where the mistake is
    made, instead of in a later layer. With CuPy, the code that computes a new
    ``data`` must run with the parameter's device current (``with p.device:``),
    as every CuPy result lands on the current device.
    """

    __slots__ = ("_data", "_grad", "requires_grad", "device")

    def __init__(self, data, requires_grad=True):
        if not hasattr(data, "dtype") or data.dtype.kind != "f":
            raise ValueError(f"Parameter: data must be an array of floats (float32, or float64 for gradient checks), "
                             f"got {getattr(data, 'dtype', type(data).__name__)}; an integer parameter could never "
                             "be updated")
        self.device = get_device(data)
        self._data = data
        self._grad = None
        self.requires_grad = requires_grad

    def _same_shape(self, value):
        """A gradient must match the data exactly: broadcasting would spread a wrong one over every entry."""
        if tuple(value.shape) != tuple(self._data.shape) or value.dtype != self._data.dtype:
            raise ValueError(f"Parameter{tuple(self._data.shape)}: a gradient of shape {tuple(value.shape)} and dtype "
                             f"{value.dtype} does not match the parameter's shape {tuple(self._data.shape)} and dtype "
                             f"{self._data.dtype}")
        return value

    def _same_device(self, value, what):
        if get_device(value) != self.device:
            raise ValueError(f"Parameter{tuple(self._data.shape)}: its {what} would be on {get_device(value)} "
                             f"but the parameter is on {self.device}; compute it with `with param.device:` or "
                             "move the parameter with param.to(device)")
        return value

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data = self._same_device(value, "data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = None if value is None else self._same_shape(self._same_device(value, "gradient"))

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    def to(self, device=None, dtype=None):
        """Move to ``device`` and/or cast to ``dtype`` (the gradient too). Returns self."""
        if device is not None:
            device = as_device(device)
            self._data = to_device(self._data, device)
            self._grad = None if self._grad is None else to_device(self._grad, device)
            self.device = device
        if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"Parameter.to: dtype must be float32 or float64, got {np.dtype(dtype)}")
        if dtype is not None and self._data.dtype != np.dtype(dtype):
            with self.device:
                self._data = self._data.astype(dtype)
                self._grad = None if self._grad is None else self._grad.astype(dtype)
        return self

    def accumulate(self, g):
        """grad += g (allocating it on first use)."""
        if not self.requires_grad:
            return
        if self._grad is None:
            self.grad = g
        else:
            with self.device:
                self._grad += self._same_shape(self._same_device(g, "gradient"))

    def __repr__(self):
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"


class Layer:
    """Base class. Subclasses set parameters and sub-layers as attributes.

    Attributes that are Parameters or Layers are registered in the order they
    are assigned, which gives ``named_parameters()`` its PyTorch-like names
    (``weight``, ``bias``, ``0.weight`` inside a Sequential, ...).
    """

    training = True

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_children", OrderedDict())
        self.training = True

    def __setattr__(self, name, value):
        params = self.__dict__.get("_params")
        if params is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        children = self.__dict__["_children"]
        params.pop(name, None)
        children.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Layer):
            children[name] = value
        object.__setattr__(self, name, value)

    # -- the contract -------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __call__(self, x):
        return self.forward(x)

    # -- parameters ---------------------------------------------------------
    def named_parameters(self, prefix=""):
        """Yield ``(name, Parameter)`` for this layer and its sub-layers."""
        for name, p in self._params.items():
            yield prefix + name, p
        for cname, child in self._children.items():
            yield from child.named_parameters(prefix + cname + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_layers(self, prefix=""):
        """Yield ``(name, layer)`` for every sub-layer, depth first."""
        for cname, child in self._children.items():
            yield prefix + cname, child
            yield from child.named_layers(prefix + cname + ".")

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        """Training mode (dropout active). Returns self."""
        object.__setattr__(self, "training", bool(mode))
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout is the identity). Returns self."""
        return self.train(False)

    # -- state, dtype and device -------------------------------------------
    def state_dict(self):
        """``{name: array}`` of every parameter (the arrays themselves, not copies)."""
        return OrderedDict((n, p.data) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters, keeping each parameter's device and dtype."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            if not (isinstance(value, np.ndarray) or is_cupy_array(value)) or value.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}.load_state_dict: '{name}' must be an array of floats, got "
                                f"{type(value).__name__}{' of ' + str(value.dtype) if hasattr(value, 'dtype') else ''}")
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: '{name}' has shape {tuple(value.shape)}, "
                    f"expected {tuple(p.shape)}"
                )
            value = to_device(value, p.device)
            with p.device:             # a copy of our own, in the parameter's dtype, on its device
                p.data = value.astype(p.dtype, copy=True)

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every parameter in place. Returns self.

        ``layer.to(dtype='float64')`` is how gradient checks run the same code
        in double precision.
        """
        for p in self.parameters():
            p.to(device, dtype)
        return self

    # -- randomness (dropout) ----------------------------------------------
    def rng_state(self):
        """The random state of this layer and its sub-layers (plain ints)."""
        return {name: child.rng_state() for name, child in self._children.items() if child.rng_state()}

    def set_rng_state(self, state):
        for name, sub in state.items():
            self._children[name].set_rng_state(sub)

    def set_batch_offset(self, rows):
        """Where the next batches start in the global batch, in rows (data parallelism).

        A process that computes rows [rows, rows + b) of a larger batch draws
        the random numbers of those rows (dropout's masks), so that K
        processes together draw what one process draws for the whole batch.
        """
        for child in self._children.values():
            child.set_batch_offset(rows)

    # -- input checks -------------------------------------------------------
    def _check_input(self, x, ndim=None, channels=None, axis=1, what="input"):
        """Raise a ValueError naming this layer if ``x`` is not what it expects."""
        name = type(self).__name__
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ValueError(f"{name}: expected a NumPy or CuPy array, got {type(x).__name__}")
        if ndim is not None and x.ndim != ndim:
            hint = f" {self._shape_hint()}" if self._shape_hint() else ""
            raise ValueError(f"{name}: expected a {ndim}-D {what}{hint}, got shape {tuple(x.shape)}")
        if channels is not None and x.shape[axis] != channels:
            raise ValueError(
                f"{name}: expected {channels} {'channels' if x.ndim == 4 and axis == 1 else 'features'}"
                f"{' ' + self._shape_hint() if self._shape_hint() else ''}, got shape {tuple(x.shape)}"
            )
        if x.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}: expected a floating-point {what} (float32; float64 for gradient checks), got "
                             f"dtype {x.dtype}" + ("; float16 overflows (LRN squares its input)"
                                                   if x.dtype == np.float16 else ""))
        self.__dict__["_ran_in"] = x.dtype        # the dtype backward's dy must have
        params = list(self._params.values())
        if params:
            p = params[0].data
            if x.dtype != p.dtype:
                raise ValueError(
                    f"{name}: input dtype {x.dtype} does not match the parameters' {p.dtype}; "
                    f"cast the input or call layer.to(dtype='{x.dtype}')"
                )
            if is_cupy_array(x) != is_cupy_array(p) or get_device(x) != get_device(p):
                raise ValueError(
                    f"{name}: input is on {get_device(x)} but the parameters are on {get_device(p)}; "
                    "move one of them with minidl.to_device / layer.to(device)"
                )

    def _shape_hint(self):
        return ""

    def _check_cache(self, attr):
        if getattr(self, attr, None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward, or a second time after one "
                               "forward: each backward needs a forward of its own")

    def _check_grad(self, dy, shape):
        """Raise unless the upstream gradient ``dy`` has the shape and dtype of the output it belongs to
        (broadcasting would hide a wrong shape; a float64 dy would turn a float32 layer's gradients into
        float64 without a word)."""
        got = tuple(dy.shape) if hasattr(dy, "shape") else type(dy).__name__
        if got != tuple(shape):
            raise ValueError(f"{type(self).__name__}.backward: dy has shape {got} but the output had "
                             f"{tuple(shape)}")
        ran = self.__dict__.get("_ran_in")
        if ran is not None and dy.dtype != ran:
            raise ValueError(f"{type(self).__name__}.backward: dy is {dy.dtype} but the layer ran in {ran}; cast dy "
                             f"to {ran}")

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._children:
            for name, child in self._children.items():
                sub = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    Sub-layers are named ``0``, ``1``, ... as in PyTorch.
    """

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: item {i} is {type(layer).__name__}, not a Layer")
            setattr(self, str(i), layer)

    def __len__(self):
        return len(self._children)

    def __getitem__(self, i):
        return list(self._children.values())[i]

    def __iter__(self):
        return iter(self._children.values())

    def forward(self, x):
        for layer in self._children.values():
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self._children.values()):
            dy = layer.backward(dy)
        return dy
