"""The two-tower AlexNet as one network on one device, with grouped convolutions.

The paper split its net over two GPUs; on one device the same function is a
network whose conv2, conv4 and conv5 are *grouped* convolutions (each half of
the output maps sees only its half of the input maps, as each tower does),
whose conv3 and fully connected layers read every map, and whose LRN
normalises each half of the maps on its own (a tower's LRN never looks into
the other tower's maps). Caffe's bvlc_alexnet is this picture, except that
its LRN window does cross the halves.

``GroupedAlexNet(model)`` builds that network from a built two-tower (or
one-tower) ``AlexNet`` and copies the model's weights into it, tower 0's
kernels first:

    conv weight (O, C/G, k, k) = concat(tower0 (O/2, ...), tower1 (O/2, ...))   G = towers x groups
    fc weight   (F, D)         = concat(tower0 (F/2, D), tower1 (F/2, D))

so both compute the same logits (fc8's classes are split over the towers in
the same order) and, backwards, the same gradients; ``tower_arrays('grad')``
cuts the grouped network's gradients back into the two-tower model's
parameter names for comparison. Dropout is in the grouped network too, but
its masks are drawn for the whole layer, not per tower: compare the two in
eval mode.
"""

from __future__ import annotations

import numpy as np

from minidl.backend import asnumpy, get_array_module
from minidl.layers import Conv2D, Dropout, Flatten, Layer, Linear, LocalResponseNorm, MaxPool2D, ReLU, Sequential

__all__ = ["GroupedLRN", "GroupedAlexNet"]


class GroupedLRN(Layer):
    """``GroupedLRN(groups, size, alpha, beta, k)``: LocalResponseNorm within each of ``groups``
    equal blocks of channels, so no window reaches from one block into the next.

    x (N, C, H, W) with C divisible by groups -> y of the same shape;
    y[:, block g] = LRN(x[:, block g]). Backward splits dy the same way.
    """

    def __init__(self, groups=2, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        if groups < 1:
            raise ValueError(f"GroupedLRN: groups must be >= 1, got {groups}")
        self.groups = int(groups)
        for g in range(self.groups):
            setattr(self, f"block{g}", LocalResponseNorm(size, alpha, beta, k))
        self.blocks = [getattr(self, f"block{g}") for g in range(self.groups)]

    def _split(self, x):
        self._check_input(x, ndim=4)
        if x.shape[1] % self.groups:
            raise ValueError(f"GroupedLRN: {x.shape[1]} channels do not split into {self.groups} groups")
        xp = get_array_module(x)
        c = x.shape[1] // self.groups
        return xp, [xp.ascontiguousarray(x[:, g * c:(g + 1) * c]) for g in range(self.groups)]

    def forward(self, x):
        xp, parts = self._split(x)
        return xp.concatenate([blk.forward(p) for blk, p in zip(self.blocks, parts)], axis=1)

    def backward(self, dy):
        xp, parts = self._split(dy)
        return xp.concatenate([blk.backward(p) for blk, p in zip(self.blocks, parts)], axis=1)

    def extra_repr(self):
        b = self.blocks[0]
        return f"groups={self.groups}, size={b.size}, alpha={b.alpha}, beta={b.beta}, k={b.k}"

    def __repr__(self):
        return f"GroupedLRN({self.extra_repr()})"


class GroupedAlexNet(Layer):
    """``GroupedAlexNet(model)``: ``model``'s network on one device, towers as groups.

    One ``Sequential`` per stage (attributes ``conv1`` ... ``fc8``, in
    ``stage_names``), on the device of the model's first tower, holding copies
    of the model's weights. ``forward(x) -> logits``; ``backward(dlogits) ->
    dL/dx`` (filling every parameter's gradient); ``tower_arrays('data' or
    'grad')`` gives ``{'<stage>.tower<t>.weight': array, ...}``, the
    parameters or gradients cut back into the model's towers.
    """

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        towers = len(model.devices)
        self.towers = towers
        self.stage_names = list(model.stage_names)
        self.splits = {}             # stage -> output units per tower
        ch = model.in_channels
        for st in model.stages:
            block0 = st.blocks[0]
            mains = [b.main for b in st.blocks]
            self.splits[st.name] = [m.weight.shape[0] for m in mains]
            layers = []
            for name in block0.order:
                sub = getattr(block0, name)
                if name == "conv":
                    if st.reads in ("input", "both") and sub.groups != 1:
                        raise ValueError(f"GroupedAlexNet: {st.name} reads {st.reads} with groups={sub.groups} "
                                         "inside a tower; that is not one grouped convolution")
                    groups = 1 if st.reads in ("input", "both") else towers * sub.groups
                    out = sum(m.out_channels for m in mains)
                    layers.append(Conv2D(ch, out, sub.kernel_size, sub.stride, sub.padding, groups=groups,
                                         bias=sub.bias is not None))
                    ch = out
                elif name == "linear":
                    out = sum(m.out_features for m in mains)
                    layers.append(Linear(sub.in_features, out, bias=sub.bias is not None))
                elif name == "lrn":
                    layers.append(GroupedLRN(towers, sub.size, sub.alpha, sub.beta, sub.k))
                elif name == "pool":
                    layers.append(MaxPool2D(sub.kernel_size, sub.stride))
                elif name == "relu":
                    layers.append(ReLU())
                elif name == "flatten":
                    layers.append(Flatten())
                elif name in ("dropout", "drop_in"):
                    layers.append(Dropout(sub.p, seed=sub.seed, mode=getattr(sub, "mode", "inverted")))
                else:
                    raise ValueError(f"GroupedAlexNet: preset {cfg.name!r} has an unknown layer {name!r}")
            setattr(self, st.name, Sequential(*layers))
        self.stages = [getattr(self, n) for n in self.stage_names]
        self.load_towers(model)
        self.to(device=model.devices[0])
        self.train(model.training)

    def _main(self, stage):
        return next(layer for layer in getattr(self, stage) if isinstance(layer, (Conv2D, Linear)))

    def load_towers(self, model):
        """Copy ``model``'s tower weights in (tower 0 first along the output axis). Returns self."""
        params = dict(model.named_parameters())
        for name in self.stage_names:
            main = self._main(name)
            for attr in ("weight", "bias"):
                p = getattr(main, attr)
                if p is None:
                    continue
                parts = [np.asarray(asnumpy(params[f"{name}.tower{t}.{attr}"].data)) for t in range(self.towers)]
                p.data = np.concatenate(parts, axis=0)
        return self

    def tower_arrays(self, what="data"):
        """``{'<stage>.tower<t>.<weight|bias>': array}`` cut from this network's parameters
        (``what='data'``) or gradients (``'grad'``), in the two-tower model's names."""
        if what not in ("data", "grad"):
            raise ValueError(f"tower_arrays: what must be 'data' or 'grad', got {what!r}")
        out = {}
        for name in self.stage_names:
            main = self._main(name)
            bounds = np.cumsum([0] + self.splits[name])
            for attr in ("weight", "bias"):
                p = getattr(main, attr)
                if p is None:
                    continue
                arr = getattr(p, what)
                if arr is None:
                    raise ValueError(f"tower_arrays: {name}.{attr} has no gradient; run backward first")
                for t in range(self.towers):
                    out[f"{name}.tower{t}.{attr}"] = arr[bounds[t]:bounds[t + 1]]
        return out

    def forward(self, x):
        for st in self.stages:
            x = st.forward(x)
        return x

    def backward(self, dy):
        for st in reversed(self.stages):
            dy = st.backward(dy)
        return dy

    def __repr__(self):
        lines = [f"GroupedAlexNet({self.towers} tower(s) as groups"]
        for name, st in zip(self.stage_names, self.stages):
            lines.append(f"  {name}: " + " -> ".join(repr(layer) for layer in st))
        return "\n".join(lines) + "\n)"

