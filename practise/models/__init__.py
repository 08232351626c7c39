"""Built-in architectures. Importing this package registers them."""
from . import cifar_resnet, mobilenet, resnet  # noqa: F401  (registration side effect)
from .registry import create_model, list_models, register_model
from .weights import load_state_dict_strict, load_weights_, read_state_dict

__all__ = ["create_model", "list_models", "register_model", "load_weights_", "read_state_dict",
           "load_state_dict_strict"]
