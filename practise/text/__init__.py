"""Token models (Hugging Face transformers or any model taking ids and a mask) and text
tiny sets. ``transformers`` is optional: ``pip install -e ".[transformers]"``."""
from .loading import HFBundle, load_hf
from .model import SequenceModel, resolve_hf_path
from .tinyset import TextTinySet, build_text_tiny_set, read_examples

__all__ = ["HFBundle", "SequenceModel", "load_hf", "resolve_hf_path", "TextTinySet", "build_text_tiny_set",
           "read_examples"]
