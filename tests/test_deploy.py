"""Deployment: ONNX / torch.export / TorchScript files that match PyTorch, and latency
measured by onnxruntime."""
import json

import numpy as np
import pytest
import torch

from helpers import tiny_resnet
from practise.cli import main
from practise.export import export_model, onnx_parity
from practise.export.formats import onnx_bytes, onnx_session
from practise.latency import FULL, LatencyConfig, block_latency_reductions, measure_variants
from practise.model_io import save_compressed, arch_spec
from practise.surgery import drop_blocks

ort = pytest.importorskip("onnxruntime")
SHAPE = (1, 16, 16)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript is deprecated, still offered
def test_every_format_matches_pytorch_with_a_dynamic_batch(tmp_path):
    model = drop_blocks(tiny_resnet(), ["layer1.1", "layer3.2"])
    results = export_model(model, SHAPE, tmp_path, ["onnx", "torch-export", "torchscript"])
    assert [r.path.name for r in results] == ["model.onnx", "model.pt2", "model.torchscript.pt"]
    assert all(r.max_abs_diff < 1e-4 for r in results)
    x = torch.randn(7, *SHAPE)  # a batch size no export saw
    with torch.no_grad():
        expected = model.eval()(x)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == (7, 10) and np.abs(got - expected.numpy()).max() < 1e-4
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    assert torch.allclose(program(x), expected, atol=1e-4)
    traced = torch.jit.load(str(tmp_path / "model.torchscript.pt"))
    assert torch.allclose(traced(x), expected, atol=1e-4)


def test_a_tuple_output_exports_its_logits_and_a_broken_export_is_not_written(tmp_path):
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_resnet()

        def forward(self, x):
            return self.net(x), x.mean()

    model = Pair().eval()
    program = onnx_bytes(model, SHAPE)
    assert onnx_parity(model, program, SHAPE) < 1e-4
    with pytest.raises(ValueError, match="differs from PyTorch by up to .*tolerance 1e-12"):
        export_model(model, SHAPE, tmp_path, ["onnx"], tolerance=1e-12)
    assert not (tmp_path / "model.onnx").exists()
    with pytest.raises(ValueError, match="unknown export format 'tflite'; valid choices: onnx, torchscript"):
        export_model(model, SHAPE, tmp_path, ["tflite"])


def test_cli_export_of_a_compressed_model(tmp_path, capsys):
    model = drop_blocks(tiny_resnet(), ["layer2.1"])
    path = save_compressed(tmp_path / "small.safetensors", model, ["layer2.1"], "layer3", arch_spec(tiny_resnet()),
                           {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.25]})
    out = tmp_path / "deploy"
    assert main(["export", "--model", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "model.pt2" in printed and "onnxruntime" in printed
    assert main(["export", "--model", str(path), "--out", str(out)]) == 2  # files exist, no --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a flag error: argparse's one line, exit code 2
        main(["export", "--model", str(path), "--out", str(out), "--formats", "onnx,keras"])
    assert exit_.value.code == 2 and "unknown format 'keras'" in capsys.readouterr().err


def test_onnxruntime_backend_drives_block_latency_and_records_itself():
    model = tiny_resnet()
    config = LatencyConfig(backend="onnxruntime", device="cpu", batch_size=2, repeats=6, warmup=1, threads=1)
    stats, settings = measure_variants(model, SHAPE, {FULL: [], "drop": ["layer1.1", "layer1.2"]}, config)
    assert settings.backend == "onnxruntime" and settings.threads == 1 and stats[FULL].samples == 6
    r_b, details, settings = block_latency_reductions(model, SHAPE, ["layer1.1", "layer2.1"], config)
    assert settings.backend == "onnxruntime" and set(r_b) == {"layer1.1", "layer2.1"}
    with pytest.raises(ValueError, match="float32 on the CPU"):
        measure_variants(model, SHAPE, {FULL: []}, LatencyConfig(backend="onnxruntime", dtype="bfloat16"))


def test_onnx_session_threads_are_set():
    session = onnx_session(onnx_bytes(tiny_resnet(), SHAPE), threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    assert json.dumps(session.get_providers()) == '["CPUExecutionProvider"]'
