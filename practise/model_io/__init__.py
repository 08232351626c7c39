"""Model files in and out: weights files read without unpickling (``weights.py``), the
compressed model file format (``model_file.py``), and getting a model from a name or a
file (``loading.py``)."""
from .loading import infer_arch_kwargs, input_channels, load_model, recorded_preprocessing
from .model_file import (FORMAT, UntrustedModelFile, arch_spec, is_compressed_file, load_compressed, read_header,
                         read_metadata, save_compressed)
from .weights import check_finite, load_state_dict_strict, load_weights_, read_state_dict

__all__ = ["infer_arch_kwargs", "input_channels", "load_model", "recorded_preprocessing", "FORMAT",
           "UntrustedModelFile", "arch_spec", "is_compressed_file", "load_compressed", "read_header", "read_metadata",
           "save_compressed", "check_finite", "load_state_dict_strict", "load_weights_", "read_state_dict"]
