"""Data: image sources, the paper's tiny-set sampling, transforms."""
from .sampling import sample_tiny_set
from .sources import (FASHION_MNIST_CLASSES, ImageFolderSource, ImageSource, TensorSource, UnreadableImage,
                      load_fashion_mnist, open_source)
from .tinyset import TinySet, build_tiny_set
from .transforms import TransformConfig, Transforms

__all__ = ["sample_tiny_set", "ImageSource", "ImageFolderSource", "TensorSource", "UnreadableImage",
           "load_fashion_mnist", "open_source", "FASHION_MNIST_CLASSES", "TinySet", "build_tiny_set", "TransformConfig",
           "Transforms"]
