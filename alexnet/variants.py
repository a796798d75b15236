"""The paper's ablations as variants of a preset: the same net with one idea taken out.

Each variant changes one thing the paper credits with a gain (the numbers are
the paper's, on ILSVRC-2010/2012, in points of top-1 / top-5 error):

- ``no-lrn``: no local response normalisation (Section 3.3: LRN -1.4 / -1.2).
- ``no-overlap``: max-pooling with z = s = 2 instead of z = 3, s = 2
  (Section 3.4: overlapping -0.4 / -0.3). The paper's comparison kept every
  map size; for a pooled map of even size n, 3/2 pooling gives n/2 - 1 and
  2/2 gives n/2, so the convolution before it loses one pixel of padding on
  each side (n -> n - 2) and every later size, and every weight, is unchanged.
- ``one-tower``: one tower with half the kernels in conv1-conv4 (Section 3.2:
  two towers -1.7 / -1.2). As in the paper's footnote, conv5 and the fully
  connected layers keep their full size, so the two nets have about the same
  number of parameters.
- ``no-dropout``: dropout off in fc6 and fc7 (Section 4.2: without it,
  "substantial overfitting"; with it, "roughly double the number of
  iterations required to converge").
- ``no-augment``: training sees the test transform (the centre crop, no
  flips, no colour noise) (Section 4.1: without augmentation, "substantial
  overfitting").

``variant_config(cfg, name)`` gives the changed network; ``augments(name)``
whether training augments. ``python -m alexnet.train --variant NAME`` trains
one, and ``python -m alexnet.ablations`` runs the study.
"""

from __future__ import annotations

from dataclasses import replace

from .configs import Config

VARIANTS = {
    "baseline": "the preset as it is",
    "no-lrn": "no local response normalisation",
    "no-overlap": "non-overlapping 2/2 max-pooling instead of 3/2, map sizes kept",
    "one-tower": "one tower, half the kernels in conv1-conv4 (conv5 and the FC layers kept)",
    "no-dropout": "no dropout in the FC layers",
    "no-augment": "no data augmentation: training sees the centre crop",
}

# The paper's gain for each idea, in points of (top-1, top-5) error, and where it says so.
PAPER_GAINS = {
    "no-lrn": ((1.4, 1.2), "Section 3.3"),
    "no-overlap": ((0.4, 0.3), "Section 3.4"),
    "one-tower": ((1.7, 1.2), "Section 3.2"),
    "no-dropout": (None, "Section 4.2: without dropout, substantial overfitting; dropout roughly doubles "
                         "the iterations to converge"),
    "no-augment": (None, "Section 4.1: without augmentation, substantial overfitting"),
}


def check_variant(name):
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return name


def augments(name) -> bool:
    """Whether training with this variant uses the data augmentation."""
    return check_variant(name) != "no-augment"


def _conv_out(n, spec):
    return (n + 2 * spec.padding - spec.kernel_size) // spec.stride + 1


def _pool_out(n, pool):
    return (n - pool["kernel_size"]) // pool["stride"] + 1


def _no_overlap(cfg: Config) -> Config:
    pool = dict(kernel_size=cfg.pool["stride"], stride=cfg.pool["stride"])
    if pool["kernel_size"] >= cfg.pool["kernel_size"]:
        raise ValueError(f"preset {cfg.name!r}: its pooling ({cfg.pool['kernel_size']}/{cfg.pool['stride']}) "
                         "does not overlap already")
    convs, n = [], cfg.input_size
    for spec in cfg.convs:
        out = _conv_out(n, spec)
        if "pool" in spec.after:
            want = _pool_out(out, cfg.pool)
            # shrink the convolution's output until the new pooling gives the old size
            while _pool_out(_conv_out(n, spec), pool) > want:
                if spec.padding == 0:
                    raise ValueError(f"preset {cfg.name!r}: {spec.name}'s pooled maps cannot keep their size "
                                     "with non-overlapping pooling")
                spec = replace(spec, padding=spec.padding - 1)
            if _pool_out(_conv_out(n, spec), pool) != want:
                raise ValueError(f"preset {cfg.name!r}: {spec.name}'s pooled maps cannot keep their size "
                                 "with non-overlapping pooling")
            n = want
        else:
            n = out
        convs.append(spec)
    return cfg.with_(convs=tuple(convs), pool=pool)


def _one_tower(cfg: Config) -> Config:
    if cfg.towers != 2:
        raise ValueError(f"preset {cfg.name!r} has {cfg.towers} tower(s); the one-tower variant halves a "
                         "two-tower net")
    last = len(cfg.convs) - 1
    convs = tuple(spec if i == last else replace(spec, out_channels=spec.out_channels // 2)
                  for i, spec in enumerate(cfg.convs))
    return cfg.with_(towers=1, convs=convs)


def variant_config(cfg: Config, name: str) -> Config:
    """The preset ``cfg`` with one idea taken out (``name`` from VARIANTS)."""
    check_variant(name)
    if name in ("baseline", "no-augment"):
        return cfg
    if name == "no-lrn":
        new = cfg.with_(convs=tuple(replace(s, after=tuple(a for a in s.after if a != "lrn")) for s in cfg.convs))
    elif name == "no-overlap":
        new = _no_overlap(cfg)
    elif name == "one-tower":
        new = _one_tower(cfg)
    else:   # no-dropout
        new = cfg.with_(fcs=tuple(replace(f, dropout_before=0.0, dropout_after=0.0) for f in cfg.fcs))
    return new.with_(name=f"{cfg.name} {name}")
