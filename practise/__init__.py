"""practise: accelerate a pretrained network with a tiny set by dropping residual blocks."""
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
__version__ = "0.1.0"
