"""The onnxruntime backend: latency as a user who deploys with onnxruntime sees it.

Each variant (the model with some blocks dropped) is exported to ONNX in memory and run by
an onnxruntime session on the CPU execution provider, with ``LatencyConfig.threads``
intra-op threads (torch's thread count when unset) and one inter-op thread. float32 on the
CPU only. Needs ``pip install onnx onnxruntime``.
"""
from __future__ import annotations

from ..surgery import drop_blocks
from .backend import LatencyBackend
from ..errors import UsageError


class SessionRunner:
    """A runnable: the session is bound once; entering costs nothing."""

    def __init__(self, session):
        self.session = session
        self.input = session.get_inputs()[0].name

    def __enter__(self):
        return lambda x: self.session.run(None, {self.input: x.numpy()})

    def __exit__(self, *exc) -> None:
        return None


class OnnxRuntimeBackend(LatencyBackend):

    def prepare(self, model, variants, sample_shape, config, device):
        from ..export.formats import onnx_bytes, onnx_session, refuse_token_models

        refuse_token_models(model, "the onnxruntime latency backend")
        if device.type != "cpu" or config.dtype != "float32":
            raise UsageError(f"the onnxruntime latency backend runs float32 on the CPU; got {config.dtype} on "
                             f"{device} (use `device` cpu and `dtype` float32, or the eager backend)")
        return {name: SessionRunner(onnx_session(onnx_bytes(drop_blocks(model, blocks), sample_shape), config.threads))
                for name, blocks in variants.items()}
