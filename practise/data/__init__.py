"""Data: image sources, named data sets (the catalog), the paper's tiny-set sampling, transforms."""
from .catalog import SOURCES, NamedSource, open_source, register_source, source_preprocessing
from .fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_transforms, load_fashion_mnist
from .sampling import sample_tiny_set
from .sources import HeadSource, ImageFolderSource, ImageSource, TensorSource, UnreadableImage
from .tinyset import TinySet, build_tiny_set
from .transforms import TransformConfig, Transforms

__all__ = ["SOURCES", "NamedSource", "open_source", "register_source", "source_preprocessing",
           "FASHION_MNIST_CLASSES", "fashion_mnist_transforms", "load_fashion_mnist", "sample_tiny_set",
           "HeadSource", "ImageFolderSource", "ImageSource", "TensorSource", "UnreadableImage", "TinySet",
           "build_tiny_set", "TransformConfig", "Transforms"]
