"""The two-tower AlexNet, assembled from minidl layers.

The network is a list of *stages* (conv1 ... conv5, fc6 ... fc8). Each stage
holds one *block* per tower, on that tower's device: a Conv2D or Linear
followed by the preset's ReLU / LRN / max-pool / dropout. A stage that reads
``both`` towers (conv3, fc6, fc7, fc8 in the paper) first passes the towers'
outputs through a ``minidl.parallel.Exchange``, which gives every tower the
concatenation of all of them on its own device; no other activation ever
crosses between devices. LRN runs inside each block, so its channel window
never reaches into the other tower's maps.

    x ─> tower 0: conv1 ─ conv2 ─┐     ┌> conv3 ─ conv4 ─ conv5 ─┐     ┌> fc6 ─┐     ┌> fc7 ─┐     ┌> fc8 (classes 0..499)
                                 ├─ X ─┤                         ├─ X ─┤       ├─ X ─┤       ├─ X ─┤
    x ─> tower 1: conv1 ─ conv2 ─┘     └> conv3 ─ conv4 ─ conv5 ─┘     └> fc6 ─┘     └> fc7 ─┘     └> fc8 (classes 500..999)

X: the exchange, before each stage that reads both towers (conv3, fc6, fc7, fc8); conv2, conv4 and
conv5 read only their own tower's maps.

The logits are the towers' fc8 outputs side by side, gathered on the first
tower's device. Parameters are named ``<stage>.tower<t>.weight`` / ``bias``.
"""

from __future__ import annotations

import numpy as np

from minidl.backend import as_device, asnumpy, to_device
from minidl.checks import whole
from minidl.kernels import conv_out_size
from minidl.layers import Layer
from minidl.layers.loss import log_softmax

from .configs import Config, get_config
from .initialisation import INITS, initialise
from .readout import Readout
from .stages import Stage, _conv_block, _fc_block
from .towers import Towers


def _split(total, parts):
    """Split ``total`` units over ``parts`` towers (the first towers take the remainder)."""
    return [total // parts + (1 if t < total % parts else 0) for t in range(parts)]


class AlexNet(Towers, Readout, Layer):
    """A built network. Use ``alexnet.build_model`` to make one.

    Here: building the stages from a preset, forward and backward. Elsewhere, where a reader looks for
    them: the towers' devices and threads (``alexnet.towers``), the four initialisations
    (``alexnet.initialisation``), layer names, ``features`` and ``summary`` (``alexnet.readout``).
    """

    def __init__(self, config: Config, num_classes=1000, in_channels=None, devices=None, init=None, seed=0,
                 input_size=None, input_order="rgb"):
        super().__init__()
        cfg = config
        towers = cfg.towers
        devices = ["cpu"] * towers if devices is None else list(devices)
        if len(devices) != towers:
            raise ValueError(f"preset {cfg.name!r} has {towers} tower(s); got {len(devices)} devices {devices}")
        self.devices = [as_device(d) for d in devices]
        for d in self.devices:
            d.check()
        # fc8 gives each tower a share of the classes
        num_classes = whole(num_classes, "AlexNet", f"num_classes (at least the {towers} tower(s))", low=towers)
        whole(seed, "AlexNet", "seed", low=0, high=2 ** 32 - 1)    # its dropout seeds (seed * 1000 + place) fit 64 bits
        self.config, self.num_classes = cfg, num_classes
        self.in_channels = cfg.in_channels if in_channels is None else whole(in_channels, "AlexNet", "in_channels",
                                                                             low=1)
        self.input_size = cfg.input_size if input_size is None else whole(input_size, "AlexNet", "input_size", low=1)
        if input_order not in ("rgb", "bgr"):
            raise ValueError(f"AlexNet: input_order must be 'rgb' or 'bgr' (Caffe's), got {input_order!r}")
        self.input_order = input_order      # the colour order of the input channels the weights expect
        self.init_scheme = cfg.init if init is None else init
        if self.init_scheme not in INITS:
            raise ValueError(f"unknown init {self.init_scheme!r}; choose one of {', '.join(INITS)}")

        stages, names = [], []
        ch, size = self.in_channels, self.input_size      # whole-network channels and map size
        for spec in cfg.convs:
            if spec.out_channels % towers:
                raise ValueError(f"{spec.name}: {spec.out_channels} channels do not split over {towers} towers")
            out_t = spec.out_channels // towers
            in_t = ch if spec.reads in ("input", "both") else ch // towers
            blocks = [_conv_block(spec, in_t, out_t, cfg, self.devices[t]) for t in range(towers)]
            stages.append(Stage(spec.name, spec.reads, blocks, self.devices))
            size = conv_out_size(size, spec.kernel_size, spec.stride, spec.padding)
            if "pool" in spec.after:
                size = conv_out_size(size, cfg.pool["kernel_size"], cfg.pool["stride"], 0)
            if size < 1:
                raise ValueError(f"preset {cfg.name!r}: input size {self.input_size} is too small "
                                 f"(the maps vanish at {spec.name})")
            ch = spec.out_channels
        features = ch * size * size
        for i, spec in enumerate(cfg.fcs):
            out_total = self.num_classes if spec.out_features is None else spec.out_features
            outs = _split(out_total, towers)
            blocks = [_fc_block(spec, features, outs[t], i == 0, self.devices[t], seed * 1000 + 10 * i + 2 * t)
                      for t in range(towers)]
            stages.append(Stage(spec.name, "both", blocks, self.devices))
            features = out_total
        for st in stages:
            setattr(self, st.name, st)
            names.append(st.name)
        self.stages = stages
        self.stage_names = names
        self.class_splits = _split(self.num_classes, towers)
        # Training never needs dL/dx; gradient checks and deconv projections do.
        self.need_input_grad = False
        object.__setattr__(self, "_threads", None)
        self.to(self.devices)
        self.reset_parameters(self.init_scheme, seed)

    # -- initialisation (alexnet/initialisation.py) -----------------------------
    def reset_parameters(self, scheme="paper", seed=0):
        """Draw every parameter afresh with one of the four schemes (``alexnet.initialisation``)."""
        return initialise(self, scheme, seed)

    # -- parameters ---------------------------------------------------------
    def named_parameters(self, prefix=""):
        for st in self.stages:
            for t, block in enumerate(st.blocks):
                yield from block.named_parameters(f"{prefix}{st.name}.tower{t}.")

    def param_groups(self, bias_lr_mult=1.0, bias_weight_decay=None):
        """SGD parameter groups: weights, and biases with their own rate/decay (the original code: 2x, 0)."""
        weights = [p for n, p in self.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.named_parameters() if n.endswith("bias")]
        bias_group = {"params": biases, "lr_mult": float(bias_lr_mult)}
        if bias_weight_decay is not None:
            bias_group["weight_decay"] = float(bias_weight_decay)
        return [{"params": weights}, bias_group]

    # -- forward and backward ----------------------------------------------
    @property
    def expected_input(self):
        return (self.in_channels, self.input_size, self.input_size)

    def _check(self, x):
        c, h, w = self.expected_input
        if not hasattr(x, "shape") or x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"AlexNet (preset '{self.config.name}'): expected input (N, {c}, {h}, {w}), got {got}. "
                f"Resize or crop images to {h}x{w}"
                + (" (e.g. the data pipeline's resize)" if h != w or h > 64 else "")
                + (f", or build the model with in_channels={x.shape[1]}" if getattr(x, "ndim", 0) == 4
                   and x.shape[1] != c else "")
            )

    def _run(self, x, stop=None, until=None):
        """Forward through the stages; return the towers' outputs after stage ``stop``."""
        self._check(x)
        xs = [to_device(x, d) for d in self.devices]
        for st in self.stages:
            if st.exchange is not None:
                xs = st.exchange.forward(xs)
            sub = until if st.name == stop else None
            xs = self._each(lambda block, xt: block.forward(xt, until=sub), st.blocks, xs)
            if st.name == stop:
                break
        return xs

    def forward(self, x):
        """x (N, C, S, S) on any device -> logits (N, num_classes) on the first tower's device."""
        return self._gather(self._run(x))

    def probabilities(self, x):
        """Class probabilities (N, num_classes), a float64 NumPy array: the softmax of ``forward(x)``.

        Computed as a log-softmax on the first tower's device, then copied to the
        host (one synchronisation). The model's mode (train/eval) is the caller's.
        """
        home = self.devices[0]
        with home:
            return np.exp(asnumpy(log_softmax(self.forward(x))).astype(np.float64))

    def backward(self, dlogits, input_grad=None):
        """Backpropagate d(loss)/d(logits) into every trainable parameter.

        Stages below the lowest one with a trainable parameter are skipped
        (fine-tuning the top layers costs only their backward). Returns
        d(loss)/d(x) on the first device if ``input_grad`` (default:
        ``self.need_input_grad``), else None, and then conv1's input
        gradient, the most expensive one, is never computed.
        """
        if input_grad is None:
            input_grad = self.need_input_grad
        trainable = [i for i, st in enumerate(self.stages) if any(p.requires_grad for p in st.parameters())]
        if input_grad:
            lowest = 0
        elif trainable:
            lowest = trainable[0]
        else:
            return None
        bounds = np.cumsum([0] + self.class_splits)
        gs = [to_device(dlogits[:, bounds[t]:bounds[t + 1]], d) for t, d in enumerate(self.devices)]
        for i in range(len(self.stages) - 1, lowest - 1, -1):
            st = self.stages[i]
            last = i == lowest and not input_grad
            for block in st.blocks:
                block.main.need_input_grad = not last
            try:
                gs = self._each(lambda block, g: block.backward(g), st.blocks, gs)
            finally:
                for block in st.blocks:
                    block.main.need_input_grad = True
            if last:
                return None
            if st.exchange is not None:
                gs = st.exchange.backward(gs)
        # every tower read the same input: its gradient is the sum over towers
        home = self.devices[0]
        dx = to_device(gs[0], home)
        for g in gs[1:]:
            dx = dx + to_device(g, home)
        return dx

    def __repr__(self):
        return f"AlexNet(preset='{self.config.name}', classes={self.num_classes}, devices={self.devices})"


def build_model(preset="paper", num_classes=1000, in_channels=None, devices=None, init=None, seed=0,
                input_size=None, dtype="float32", input_order="rgb"):
    """Build a preset (``'paper'``, ``'caffenet'``, ``'torchvision'``, ``'mini'``).

    ``devices``: one per tower, e.g. ``['cuda:0', 'cuda:1']`` (the paper),
    ``['cuda:0', 'cuda:0']`` (both towers on one GPU); default all CPU.
    ``init``: 'paper', 'caffe', 'original' or 'he' (default: the preset's).
    ``in_channels``/``input_size`` override the preset's input (e.g. 1 channel
    for grayscale data). ``input_order``: 'rgb', or 'bgr' for Caffe's weights.
    """
    cfg = get_config(preset)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"build_model: dtype must be float32 or float64, got {np.dtype(dtype)}")
    model = AlexNet(cfg, num_classes=num_classes, in_channels=in_channels, devices=devices, init=init,
                    seed=seed, input_size=input_size, input_order=input_order)
    if np.dtype(dtype) != np.float32:
        model.to(dtype=dtype)
    return model
