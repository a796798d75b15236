"""Trained AlexNet weights from elsewhere: torchvision and Caffe's bvlc_alexnet.

    from alexnet.pretrained import load_torchvision, load_caffe_npy, imagenet_classes
    model = load_torchvision("alexnet-owt-7be5be79.pth")       # or .safetensors / .npz
    model = load_caffe_npy("bvlc_alexnet.npy")                 # Caffe's net, exactly (preset 'bvlc')
    model = load_caffe_npy("bvlc_alexnet.npy", towers=2)       # the paper's two towers

The public names of ``alexnet.weights`` (``torchvision``: torchvision's
state dicts; ``caffe``: bvlc_alexnet.npy and ``towers=2``; ``safetensors_io``;
``state``: what the readers share), of ``alexnet.finetune`` (``python -m
alexnet.train --init-from FILE``) and ``alexnet.predict.predict_setup``
(``python -m alexnet.predict --weights FILE``), in one place.
"""

from __future__ import annotations

from .finetune import (
    FORMAT_PRESETS, FORMATS, adapt_data_spec, data_normalisation, format_preset, freeze, guess_format, init_from,
)
from .predict import predict_setup
from .weights.caffe import (
    CAFFE_LAYERS, CAFFE_MEAN_BGR, UnsafePickleError, caffe_preprocess, caffe_two_tower_config, load_caffe_npy,
    read_caffe_npy,
)
from .weights.safetensors_io import read_safetensors, write_safetensors
from .weights.state import WeightsError
from .weights.torchvision import (
    TORCHVISION_KEYS, TORCHVISION_MEAN, TORCHVISION_STD, export_torchvision, imagenet_classes, load_torchvision,
    read_torchvision_state,
)

__all__ = [
    "CAFFE_MEAN_BGR", "TORCHVISION_MEAN", "TORCHVISION_STD", "TORCHVISION_KEYS", "WeightsError",
    "UnsafePickleError", "imagenet_classes", "load_torchvision", "read_torchvision_state", "export_torchvision",
    "read_safetensors", "write_safetensors", "load_caffe_npy", "read_caffe_npy", "caffe_preprocess",
    "caffe_two_tower_config", "init_from", "freeze", "data_normalisation", "adapt_data_spec", "guess_format",
    "format_preset", "predict_setup", "CAFFE_LAYERS", "FORMATS", "FORMAT_PRESETS",
]
