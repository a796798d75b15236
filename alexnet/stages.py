"""The network's parts: a tower's block of one stage, and a stage, all towers' blocks with their exchange.

A block is a Conv2D or Linear and what follows it in the preset (ReLU, LRN,
max-pool, dropout), on its tower's device; ``alexnet.model`` puts one stage
per layer (conv1 ... fc8) together into the network.
"""

from __future__ import annotations

from minidl.backend import as_device
from minidl.layers import (
    Conv2D, Dropout, Flatten, Layer, Linear, LocalResponseNorm, MaxPool2D, ReLU,
)
from minidl.parallel import Exchange


class Block(Layer):
    """One tower's share of one stage: a Conv2D/Linear and what follows it.

    Sub-layers are attributes (``flatten``, ``drop_in``, ``conv``/``linear``,
    ``relu``, ``lrn``, ``pool``, ``dropout``) applied in ``self.order``.
    Parameters are reported under the block's own prefix (``weight``,
    ``bias``), not under the sub-layer's name.
    """

    def __init__(self, named_layers, device):
        super().__init__()
        self.order = [name for name, _ in named_layers]
        for name, layer in named_layers:
            setattr(self, name, layer)
        self.main = self.conv if "conv" in self.order else self.linear
        self.device = as_device(device)

    def named_parameters(self, prefix=""):
        yield from self.main.named_parameters(prefix)

    def forward(self, x, until=None):
        """Run the block; with ``until='relu'`` etc. stop after that sub-layer."""
        with self.device:
            for name in self.order:
                x = getattr(self, name).forward(x)
                if name == until:
                    break
        return x

    def backward(self, dy):
        with self.device:
            for name in reversed(self.order):
                dy = getattr(self, name).backward(dy)
                if dy is None:
                    break
        return dy


class Stage(Layer):
    """All towers' blocks of one stage, and the exchange that feeds them if it reads both."""

    def __init__(self, name, reads, blocks, devices):
        super().__init__()
        self.name, self.reads = name, reads
        for t, block in enumerate(blocks):
            setattr(self, f"tower{t}", block)
        self.blocks = blocks
        self.exchange = Exchange(devices) if reads == "both" and len(blocks) > 1 else None


def _conv_block(spec, in_ch, out_ch, cfg, device):
    layers = [("conv", Conv2D(in_ch, out_ch, spec.kernel_size, spec.stride, spec.padding, groups=spec.groups))]
    for op in spec.after:
        if op == "relu":
            layers.append(("relu", ReLU()))
        elif op == "lrn":
            layers.append(("lrn", LocalResponseNorm(**cfg.lrn)))
        elif op == "pool":
            layers.append(("pool", MaxPool2D(**cfg.pool)))
        else:
            raise ValueError(f"preset {cfg.name!r}: unknown op {op!r} after {spec.name}")
    return Block(layers, device)


def _fc_block(spec, in_f, out_f, first, device, seed):
    layers = [("flatten", Flatten())] if first else []
    if spec.dropout_before:
        layers.append(("drop_in", Dropout(spec.dropout_before, seed=seed)))
    layers.append(("linear", Linear(in_f, out_f)))
    if spec.relu:
        layers.append(("relu", ReLU()))
    if spec.dropout_after:
        layers.append(("dropout", Dropout(spec.dropout_after, seed=seed + 1)))
    return Block(layers, device)
