"""Built-in architectures. Importing this package registers them."""
from . import cifar_resnet, mobilenet, resnet, vit  # noqa: F401  (registration side effect)
from .registry import MODELS, create_model, list_models, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
