"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) built on minidl.

    from alexnet import build_model
    model = build_model('paper')              # two towers, 60,965,224 parameters
    print(model.summary())
"""

from .configs import PRESETS, Config, get_config
from .model import AlexNet, build_model

__all__ = ["AlexNet", "Config", "PRESETS", "build_model", "get_config"]
