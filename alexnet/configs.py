"""The network presets: the paper's AlexNet and the variants people use.

A preset is a list of stages. A conv stage is a convolution followed by
some of ReLU, LRN and max-pooling, in the preset's order; an fc stage is a
linear layer with ReLU and dropout. Each stage says what it reads:

- ``input``: the image (every tower gets a copy),
- ``own``:   only its own tower's maps (conv2, conv4, conv5 in the paper),
- ``both``:  every tower's maps, through the tower exchange (conv3, fc6-fc8).

Channel and unit counts are for the whole network; with two towers each
tower holds half of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ConvSpec:
    name: str
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    reads: str = "own"                # 'input', 'own' or 'both'
    after: tuple = ("relu",)          # any of 'relu', 'lrn', 'pool', in order
    groups: int = 1                   # conv groups inside one tower (bvlc: Caffe's group=2)


@dataclass(frozen=True)
class FCSpec:
    name: str
    out_features: int | None          # None: the number of classes
    relu: bool = True
    dropout_before: float = 0.0
    dropout_after: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """A preset's training defaults: what ``alexnet.train`` uses for the settings it is not given.

    The paper's (Section 5): batch 128, learning rate 0.01 divided by 10 when the validation error
    stops improving (at most three times), about 90 epochs.
    """
    epochs: int = 90
    batch_size: int = 128
    lr: float = 0.01
    lr_schedule: str = "plateau"          # 'plateau' (the paper) or 'step' (every lr_step epochs)
    lr_step: int | None = None            # for 'step'; None: a third of the epochs


@dataclass(frozen=True)
class Config:
    name: str
    input_size: int
    in_channels: int
    towers: int
    convs: tuple
    fcs: tuple
    lrn: dict = field(default_factory=lambda: dict(size=5, alpha=1e-4, beta=0.75, k=2.0))
    pool: dict = field(default_factory=lambda: dict(kernel_size=3, stride=2))
    init: str = "paper"
    recipe: Recipe = Recipe()
    doc: str = ""

    def with_(self, **changes):
        return replace(self, **changes)


_PAPER_FCS = (
    FCSpec("fc6", 4096, dropout_after=0.5),
    FCSpec("fc7", 4096, dropout_after=0.5),
    FCSpec("fc8", None, relu=False),
)

PAPER = Config(
    name="paper",
    input_size=227,
    in_channels=3,
    towers=2,
    convs=(
        ConvSpec("conv1", 96, 11, stride=4, reads="input", after=("relu", "lrn", "pool")),
        ConvSpec("conv2", 256, 5, padding=2, reads="own", after=("relu", "lrn", "pool")),
        ConvSpec("conv3", 384, 3, padding=1, reads="both"),
        ConvSpec("conv4", 384, 3, padding=1, reads="own"),
        ConvSpec("conv5", 256, 3, padding=1, reads="own", after=("relu", "pool")),
    ),
    fcs=_PAPER_FCS,
    doc="""The network of the paper (Section 3.5, Figure 2): 3x227x227 input, two
towers, ReLU -> LRN -> overlapping max-pool after conv1 and conv2, conv3 and
the FC layers reading both towers, dropout 0.5 after fc6 and fc7.
60,965,224 parameters for 1000 classes.""",
)

CAFFENET = PAPER.with_(
    name="caffenet",
    convs=(
        ConvSpec("conv1", 96, 11, stride=4, reads="input", after=("relu", "pool", "lrn")),
        ConvSpec("conv2", 256, 5, padding=2, reads="own", after=("relu", "pool", "lrn")),
        *PAPER.convs[2:],
    ),
    init="caffe",
    doc="""Caffe's reference CaffeNet: the paper's net with max-pooling before LRN
in the first two stages (cheaper: LRN runs on the pooled maps).""",
)

TORCHVISION = Config(
    name="torchvision",
    input_size=224,
    in_channels=3,
    towers=1,
    convs=(
        ConvSpec("conv1", 64, 11, stride=4, padding=2, reads="input", after=("relu", "pool")),
        ConvSpec("conv2", 192, 5, padding=2, reads="own", after=("relu", "pool")),
        ConvSpec("conv3", 384, 3, padding=1, reads="both"),
        ConvSpec("conv4", 256, 3, padding=1, reads="own"),
        ConvSpec("conv5", 256, 3, padding=1, reads="own", after=("relu", "pool")),
    ),
    fcs=(
        FCSpec("fc6", 4096, dropout_before=0.5),
        FCSpec("fc7", 4096, dropout_before=0.5),
        FCSpec("fc8", None, relu=False),
    ),
    init="he",
    doc="""torchvision's ``alexnet`` (Krizhevsky's 2014 "One weird trick" variant):
64-192-384-256-256 kernels, conv1 padding 2 on 224x224 input, no LRN, one
tower (no groups), dropout before fc6 and fc7. 61,100,840 parameters, and
torchvision's weights load into it (alexnet.pretrained). (torchvision adds an
adaptive average pool to 6x6, which is the identity for 224x224 input.)""",
)

MINI = Config(
    name="mini",
    input_size=28,
    in_channels=1,
    towers=2,
    convs=(
        ConvSpec("conv1", 32, 5, padding=2, reads="input", after=("relu", "lrn", "pool")),
        ConvSpec("conv2", 64, 5, padding=2, reads="own", after=("relu", "lrn", "pool")),
        ConvSpec("conv3", 96, 3, padding=1, reads="both"),
        ConvSpec("conv4", 96, 3, padding=1, reads="own"),
        ConvSpec("conv5", 64, 3, padding=1, reads="own", after=("relu", "pool")),
    ),
    fcs=(
        FCSpec("fc6", 1024, dropout_after=0.5),
        FCSpec("fc7", 1024, dropout_after=0.5),
        FCSpec("fc8", None, relu=False),
    ),
    init="he",
    # for two CPU cores: batch 64 at 0.02 for six epochs, then 0.002 for two (chosen by short probes of batch
    # size and rate on Fashion-MNIST; the stored default run, notebooks/data/mini-fashion-mnist, shows the result)
    recipe=Recipe(epochs=8, batch_size=64, lr=0.02, lr_schedule="step", lr_step=6),
    doc="""The paper's structure at Fashion-MNIST scale, for two CPU cores.

Everything that makes the net AlexNet is kept: five convolutions, two towers
with conv3 and the FC layers reading both and conv2/4/5 only their own,
ReLU -> LRN -> overlapping 3/2 max-pooling after conv1 and conv2, pooling
after conv5, three FC layers with dropout 0.5 after fc6 and fc7.

What is scaled, and why:
- Input 28x28 (Fashion-MNIST's own size; works from 28 to 64). conv1 is 5x5
  stride 1 with padding 2: an 11x11 stride-4 kernel would reduce a 28x28
  image to 5x5 before the first pool. The pools then give 28 -> 13 -> 6 -> 2.
- Widths 32-64-96-96-64 (the paper's 96-256-384-384-256 divided by 3-4,
  keeping its shape: widest in conv3/4) and 1024-1024 FC units: about 10.7M
  multiply-adds per image (the paper's is 724M). conv1 is the narrowest
  because its 28x28 maps are the largest activations: their ReLU, LRN and
  pooling are memory-bound, and 48 conv1 maps cost a third more time per
  step than 32. The FC layers are cheap here, and with dropout 0.5 on 512
  units the net learned markedly slower (83% against 85% test accuracy
  after one epoch, without augmentation); 32x32 inputs (a 3x3 instead of
  2x2 pool5) gave no gain for 1.3x the time. On two cores it trains with a
  thread per tower.
- He initialisation by default: with N(0, 0.01^2) and biases of 1 a net this
  size starts slowly; ``init='paper'`` is still available.""",
)

# --- bvlc preset (alexnet.pretrained: Caffe's bvlc_alexnet weights) -------------
BVLC = PAPER.with_(
    name="bvlc",
    towers=1,
    convs=(
        ConvSpec("conv1", 96, 11, stride=4, reads="input", after=("relu", "lrn", "pool")),
        ConvSpec("conv2", 256, 5, padding=2, reads="own", after=("relu", "lrn", "pool"), groups=2),
        ConvSpec("conv3", 384, 3, padding=1, reads="both"),
        ConvSpec("conv4", 384, 3, padding=1, reads="own", groups=2),
        ConvSpec("conv5", 256, 3, padding=1, reads="own", after=("relu", "pool"), groups=2),
    ),
    lrn=dict(size=5, alpha=1e-4, beta=0.75, k=1.0),
    init="caffe",
    doc="""Caffe's bvlc_alexnet as it ran: ONE device, conv2/4/5 with group=2 (the
towers as groups), ReLU -> LRN(5, 1e-4, 0.75, k=1) -> max-pool after conv1
and conv2, 227x227 BGR input. Its LRN window crosses the group boundary,
unlike the paper's per-tower LRN. 60,965,224 parameters, like the paper's;
``alexnet.pretrained.load_caffe_npy`` loads bvlc_alexnet.npy into it.""",
)
# --- end bvlc preset -------------------------------------------------------------

PRESETS = {c.name: c for c in (PAPER, CAFFENET, TORCHVISION, MINI, BVLC)}


def get_config(preset) -> Config:
    """The Config of a preset name (or a Config, returned as is)."""
    if isinstance(preset, Config):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None
