"""Deployment formats: ONNX (checked against PyTorch in onnxruntime), TorchScript and
torch.export programs. The compressed model file itself is ``practise.model_io``."""
from .formats import EXPORTERS, ExportResult, export_model, onnx_parity

__all__ = ["EXPORTERS", "ExportResult", "export_model", "onnx_parity"]
