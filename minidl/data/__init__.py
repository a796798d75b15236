"""Data: datasets, batch transforms and a prefetching loader.

Flow: files -> dataset (uint8 NCHW, ``get_batch``) -> ``DataLoader`` (NumPy
uint8 batches, prefetched on a thread) -> device -> ``TrainTransform`` /
``EvalTransform`` (vectorised, NumPy or CuPy) -> model.
"""

from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import DatasetError, DatasetNotFoundError, FashionMNIST, read_idx
from .folder import ImageFolder, PrepareError, scan_split
from .images import ImageDecodeError, load_image, resize_center_crop
from .loader import ArrayDataset, DataLoader, subset_indices, take_batch
from .prepare import PrepareReport, prepare_folder
from .prepared import PreparedDataset
from .pipeline import EvalTransform, TrainTransform
from .transforms import (IMAGENET_EIGVAL, IMAGENET_EIGVEC, center_crop, normalize, pca_lighting, random_crop,
                         random_flip, resize, subtract_mean, ten_crop, to_float)

__all__ = [
    "FashionMNIST", "FASHION_MNIST_CLASSES", "DatasetNotFoundError", "DatasetError", "read_idx",
    "ImageFolder", "PreparedDataset", "prepare_folder", "PrepareReport", "PrepareError",
    "ImageDecodeError", "load_image", "resize_center_crop", "scan_split",
    "ArrayDataset", "DataLoader", "subset_indices", "take_batch",
    "random_crop", "random_flip", "center_crop", "ten_crop", "resize", "pca_lighting",
    "to_float", "subtract_mean", "normalize", "TrainTransform", "EvalTransform",
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC",
]
