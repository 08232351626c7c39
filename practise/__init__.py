"""practise: accelerate a pretrained network with a tiny set by dropping residual blocks.

The public API, in the order of a run::

    from practise import (CompressConfig, build_tiny_set, compress, load_model, open_source,
                          write_compressed_outputs)

Extension points (each a :class:`~practise.registry.Registry`; see docs/architecture.md):
``register_criterion``, ``register_backend``, ``register_placement_rule``,
``register_recovery``, ``register_source``, ``register_exporter``, ``register_model``: each
``register_<kind>(name, entry)``, or ``@register_<kind>(name)`` above the entry.
"""
import logging

from .version import __version__
from .adaptors import PlacementRule, register_placement_rule
from .artifacts import write_compressed_outputs
from .blocks import Block, find_blocks
from .compress_report import CompressReport
from .criteria import RankingInputs, rank_blocks, register_criterion
from .data import (ImageSource, TransformConfig, Transforms, TinySet, build_tiny_set, open_source,
                   register_source)
from .device import resolve_device
from .evaluation import evaluate_models
from .export import Exporter, export_model, register_exporter
from .latency import LatencyBackend, LatencyConfig, measure_variants, register_backend
from .model_io import load_compressed, load_model, save_compressed
from .models import create_model, register_model
from .pipeline import CompressConfig, CompressResult, compress, inspect_model
from .preprocessing import Preprocessing, resolve_preprocessing
from .recovery import RecoveryConfig, RecoveryMethod, recover_, register_recovery
from .registry import Registry
from .scoring import ScoringConfig, score_blocks
from .seeding import seed_everything
from .selection import UnreachableTarget
from .surgery import drop_blocks
from .tiny_set import TinySetProtocol

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    # the job
    "compress", "CompressConfig", "CompressResult", "CompressReport", "write_compressed_outputs",
    # its parts
    "find_blocks", "Block", "inspect_model", "drop_blocks", "score_blocks", "recover_", "evaluate_models",
    "measure_variants", "rank_blocks", "RankingInputs", "UnreachableTarget",
    # configs
    "ScoringConfig", "RecoveryConfig", "LatencyConfig", "TransformConfig",
    # models and files
    "create_model", "load_model", "load_compressed", "save_compressed", "resolve_device",
    # data
    "open_source", "build_tiny_set", "ImageSource", "TinySet", "TinySetProtocol", "Transforms", "Preprocessing",
    "resolve_preprocessing", "seed_everything",
    # extension points
    "Registry", "register_criterion", "register_backend", "LatencyBackend", "register_placement_rule",
    "PlacementRule", "register_recovery", "RecoveryMethod", "register_source", "register_model",
    "register_exporter", "Exporter", "export_model",
]
