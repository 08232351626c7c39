"""Deployment formats: ONNX (checked against PyTorch in onnxruntime), TorchScript and
torch.export programs. The compressed model file itself is ``practise.model_io``."""
from .formats import EXPORTERS, ExportResult, Exporter, export_model, onnx_parity, register_exporter

__all__ = ["EXPORTERS", "Exporter", "register_exporter", "ExportResult", "export_model", "onnx_parity"]
