"""Trained AlexNet weights from elsewhere, one module per file format.

``torchvision`` (torchvision's state dicts), ``caffe`` (Caffe's
bvlc_alexnet.npy, through a restricted unpickler), ``safetensors_io`` (the
.safetensors reader and writer) and ``state`` (what they share: one-tower
weights into a model's towers, the checks, ``WeightsError``).
``alexnet.pretrained`` gathers their public names.
"""
