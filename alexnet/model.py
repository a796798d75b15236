"""The two-tower AlexNet, assembled from minidl layers.

The network is a list of *stages* (conv1 ... conv5, fc6 ... fc8). Each stage
holds one *block* per tower, on that tower's device: a Conv2D or Linear
followed by the preset's ReLU / LRN / max-pool / dropout. A stage that reads
``both`` towers (conv3, fc6, fc7, fc8 in the paper) first passes the towers'
outputs through a ``minidl.parallel.Exchange``, which gives every tower the
concatenation of all of them on its own device; no other activation ever
crosses between devices. LRN runs inside each block, so its channel window
never reaches into the other tower's maps.

    x ──copy──> tower 0: conv1 ─ conv2 ─┐      ┌ conv4 ─ conv5 ─┐      ┌ fc6 ─┐┌ fc7 ─┐┌ fc8 (classes 0..499)
                                        ├ X ──>┤ conv3 (t0,t1)   ├ X ──>┤      ├X      ├X
    x ──copy──> tower 1: conv1 ─ conv2 ─┘      └ conv4 ─ conv5 ─┘      └ fc6 ─┘└ fc7 ─┘└ fc8 (classes 500..999)

The logits are the towers' fc8 outputs side by side, gathered on the first
tower's device. Parameters are named ``<stage>.tower<t>.weight`` / ``bias``.
"""

from __future__ import annotations

import numpy as np

from minidl import init as minit
from minidl.backend import as_device, asnumpy, get_array_module, to_device
from minidl.checks import whole
from minidl.kernels import conv_out_size
from minidl.layers import Layer
from minidl.layers.loss import log_softmax
from minidl.parallel import TowerThreads

from .configs import Config, get_config
from .stages import Stage, _conv_block, _fc_block

INITS = ("paper", "caffe", "original", "he")


def _split(total, parts):
    """Split ``total`` units over ``parts`` towers (the first towers take the remainder)."""
    return [total // parts + (1 if t < total % parts else 0) for t in range(parts)]


class AlexNet(Layer):
    """A built network. Use ``alexnet.build_model`` to make one."""

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
        whole(seed, "AlexNet", "seed", low=0)
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

    def to(self, device=None, dtype=None):
        """Move towers (one device for all, or a list with one per tower) and/or cast. Returns self."""
        if device is not None:
            devs = list(device) if isinstance(device, (list, tuple)) else [device] * len(self.devices)
            if len(devs) != len(self.devices):
                raise ValueError(f"AlexNet.to: {len(self.devices)} towers but {len(devs)} devices given")
            self.devices = [as_device(d).check() for d in devs]
            if any(d.is_cuda for d in self.devices):
                self.tower_threads = False
            for st in self.stages:
                for block, dev in zip(st.blocks, self.devices):
                    block.device = dev
                    Layer.to(block, device=dev)
                if st.exchange is not None:
                    st.exchange.devices = list(self.devices)
        if dtype is not None:
            Layer.to(self, dtype=dtype)
        return self

    # -- initialisation -----------------------------------------------------
    def reset_parameters(self, scheme="paper", seed=0):
        """Draw every parameter afresh, in a fixed order, from one seeded generator.

        paper:    weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.
        caffe:    bvlc_alexnet's prototxt: std 0.01 (fc6, fc7: 0.005); those biases 0.1.
        original: cuda-convnet's layers-145: std 0.03 in conv3-5, else as paper.
        he:       N(0, 2/fan_in) weights, zero biases; the output layer (fc8) N(0, 0.01^2) as in
                  the paper, so the first logits are near zero (He's scale there gave a first
                  loss of ~4.4 instead of ln(classes) and slowed the first epoch).
        """
        rng = np.random.default_rng(seed)
        one_biases = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for st in self.stages:
            for block in st.blocks:
                w, b = block.main.weight, block.main.bias
                if scheme == "he" and st is not self.stages[-1]:
                    minit.he_normal_(w, rng)
                elif scheme == "he":
                    minit.normal_(w, 0.01, rng)
                else:
                    std = 0.01
                    if scheme == "caffe" and st.name in ("fc6", "fc7"):
                        std = 0.005
                    if scheme == "original" and st.name in ("conv3", "conv4", "conv5"):
                        std = 0.03
                    minit.normal_(w, std, rng)
                if b is not None:
                    value = 0.0
                    if scheme != "he" and st.name in one_biases:
                        value = 0.1 if scheme == "caffe" else 1.0
                    minit.constant_(b, value)
        return self

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

    # -- towers in threads (CPU) ---------------------------------------------
    @property
    def tower_threads(self):
        """True when the towers' blocks run at the same time, one thread each (CPU towers only)."""
        return self._threads is not None

    @tower_threads.setter
    def tower_threads(self, enable):
        if enable and len(self.devices) > 1:
            if any(d.is_cuda for d in self.devices):
                raise ValueError("tower_threads is for towers on the CPU; GPU towers already run concurrently")
            if self._threads is None:
                object.__setattr__(self, "_threads", TowerThreads(len(self.devices)))
        elif not enable and self._threads is not None:
            self._threads.close()
            object.__setattr__(self, "_threads", None)

    def _each(self, fn, blocks, xs):
        if self._threads is None:
            return [fn(b, x) for b, x in zip(blocks, xs)]
        return self._threads.map(fn, blocks, xs)

    def _gather(self, xs):
        """Concatenate the towers' outputs along axis 1 on the first device."""
        if len(xs) == 1:
            return xs[0]
        home = self.devices[0]
        parts = [to_device(x, home) for x in xs]
        with home:
            return get_array_module(parts[0]).concatenate(parts, axis=1)

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

    # -- reading out activations ---------------------------------------------
    # Caffe's names for the outputs of convK's LRN and max-pool ('norm1', 'pool5')
    _CAFFE = {"lrn": "norm", "pool": "pool"}

    def layer_name(self, stage, sub):
        """The name ``features`` reads a sub-layer's output by: ``'pool1'``, ``'norm2'`` (as Caffe and the
        literature name them) for a conv stage's LRN and pooling, else ``'<stage>.<sub>'`` or the stage."""
        if sub in ("conv", "linear"):
            return stage
        if sub in self._CAFFE and stage.startswith("conv"):
            return self._CAFFE[sub] + stage[len("conv"):]
        return f"{stage}.{sub}"

    def layer_names(self):
        """The layers as ``summary`` lists them, each a name ``features`` accepts. A stage's row is its
        conv or linear layer, but ``features('conv1')`` is the rectified output, as in Caffe, whose
        ReLUs work in place (``'conv1.conv'``: before the ReLU)."""
        return [self.layer_name(st.name, sub) for st in self.stages for sub in st.blocks[0].order]

    def _locate(self, layer):
        """(stage, sub-layer) of a layer name."""
        stage, sub = layer.partition(".")[::2]
        for sub_name, prefix in self._CAFFE.items():
            if layer.startswith(prefix) and layer[len(prefix):].isdigit():
                stage, sub = "conv" + layer[len(prefix):], sub_name
        if stage not in self.stage_names:
            raise ValueError(f"features: unknown layer {layer!r}; layers are {', '.join(self.layer_names())}")
        order = getattr(self, stage).blocks[0].order
        if not sub:                        # a stage: its rectified output (fc8: the logits)
            return stage, ("relu" if "relu" in order else order[-1])
        if sub not in order:
            raise ValueError(f"features: stage {stage} has no {sub} (asked for {layer!r}); it has "
                             f"{', '.join(order)}")
        return stage, sub

    def features(self, x, layer):
        """The activation after a named layer, towers side by side, on the first device.

        ``layer`` as in Caffe and the literature: a stage is its rectified
        output (``'conv5'``: 256x13x13 in the paper net; ``'fc7'``: the
        4096-d image embedding of Figure 4, in eval mode), ``'norm1'``,
        ``'pool1'``, ``'norm2'``, ``'pool2'``, ``'pool5'`` the conv stages'
        LRN and pooling, ``'fc8'`` the logits. Any sub-layer can also be named
        ``'<stage>.<sub>'`` (``'conv1.conv'`` before the ReLU, ``'fc6.dropout'``).
        """
        stage, sub = self._locate(layer)
        return self._gather(self._run(x, stop=stage, until=sub))

    # -- description --------------------------------------------------------
    def summary_rows(self):
        """Per layer: name, whole-network output shape (C, H, W) or (F,), parameters, multiply-adds, devices."""
        rows = []
        shape = self.expected_input
        towers = len(self.devices)
        devs = ", ".join(str(d) for d in self.devices)
        for st in self.stages:
            block0 = st.blocks[0]
            for name in block0.order:
                layers = [getattr(b, name) for b in st.blocks]
                params = sum(sum(p.data.size for p in lay.parameters()) for lay in layers)
                macs = 0
                if name == "flatten":
                    shape = (int(np.prod(shape)),)
                elif name == "conv":
                    outs = [lay.output_shape(shape[1], shape[2]) for lay in layers]
                    shape = (sum(o[0] for o in outs),) + outs[0][1:]
                    macs = sum(int(np.prod(o)) * lay.weight.data[0].size for o, lay in zip(outs, layers))
                elif name == "pool":
                    k, s = layers[0].kernel_size, layers[0].stride
                    shape = (shape[0], conv_out_size(shape[1], k, s, 0), conv_out_size(shape[2], k, s, 0))
                elif name == "linear":
                    shape = (sum(lay.out_features for lay in layers),)
                    macs = sum(lay.weight.data.size for lay in layers)
                label = self.layer_name(st.name, name)
                rows.append(dict(name=label, shape=tuple(shape), params=int(params), macs=int(macs),
                                 reads=st.reads if name in ("conv", "linear") else "",
                                 devices=devs if towers > 1 else str(self.devices[0])))
        return rows

    def summary(self):
        """A table of every layer: output shape, parameters, multiply-adds, device(s)."""
        rows = self.summary_rows()
        head = f"AlexNet preset '{self.config.name}': input {'x'.join(map(str, self.expected_input))}, " \
               f"{len(self.devices)} tower(s), {self.num_classes} classes"
        lines = [head, f"{'layer':<14}{'output':>14}{'params':>14}{'mult-adds':>16}  {'reads':<6} device"]
        lines.append("-" * len(lines[1]))
        for r in rows:
            lines.append(f"{r['name']:<14}{'x'.join(map(str, r['shape'])):>14}{r['params']:>14,}"
                         f"{r['macs']:>16,}  {r['reads']:<6} {r['devices']}")
        lines.append("-" * len(lines[1]))
        total_p = sum(r["params"] for r in rows)
        total_m = sum(r["macs"] for r in rows)
        lines.append(f"{'total':<14}{'':>14}{total_p:>14,}{total_m:>16,}")
        return "\n".join(lines)

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
