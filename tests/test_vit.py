"""The Vision Transformer (torchvision's module names) through the generic path."""
import json
from pathlib import Path

import pytest
import torch

from practise.adaptors import adaptor_sites
from practise.blocks import find_blocks
from practise.models import create_model
from practise.tracing import find_feature_layer, trace_model

TEACHER = Path(__file__).resolve().parents[1] / "practise" / "assets" / "teachers" / "vit_tiny_fmnist_fashion_mnist.safetensors"
TORCHVISION_KEYS = ["conv_proj.weight", "class_token", "encoder.pos_embedding",
                    "encoder.layers.encoder_layer_0.ln_1.weight",
                    "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                    "encoder.layers.encoder_layer_0.self_attention.out_proj.weight",
                    "encoder.layers.encoder_layer_0.mlp.0.weight", "encoder.layers.encoder_layer_0.mlp.3.weight",
                    "encoder.ln.weight", "heads.head.weight"]


def test_vit_layers_found_by_the_general_rule_with_token_adaptors():
    torch.manual_seed(0)
    model = create_model("vit_tiny_fmnist").eval()
    x = torch.zeros(1, 1, 28, 28)
    blocks = find_blocks(model, x)
    assert [b.name for b in blocks] == [f"encoder.layers.encoder_layer_{i}" for i in range(6)]
    sub = [b.name.rsplit(".", 1)[-1] for b in find_blocks(model, x, granularity="sublayer")]
    assert sub == ["self_attention", "mlp"] * 6
    trace = trace_model(model, x)
    assert find_feature_layer(model, trace) == "encoder"  # the final hidden state, before the class token is taken
    sites = adaptor_sites(model, "encoder.layers.encoder_layer_2", trace, trace.call_order)
    assert {s.kind for s in sites} == {"token"} and len(sites) == 5


def test_vit_uses_torchvisions_module_names():
    keys = set(create_model("vit_tiny_fmnist").state_dict())
    assert set(TORCHVISION_KEYS) <= keys


def test_a_torchvision_vit_checkpoint_loads_unchanged():
    torchvision = pytest.importorskip("torchvision")
    theirs = torchvision.models.VisionTransformer(image_size=28, patch_size=4, num_layers=6, num_heads=4,
                                                  hidden_dim=64, mlp_dim=128, num_classes=10)
    state = theirs.state_dict()
    state["conv_proj.weight"] = state["conv_proj.weight"][:, :1]  # ours is 1-channel here
    ours = create_model("vit_tiny_fmnist")
    ours.load_state_dict(state, strict=True)


@pytest.mark.slow
def test_compress_cli_on_the_shipped_vit_teacher(tmp_path):
    from practise.cli import main

    out = tmp_path / "out"
    code = main(["compress", "--model", "vit_tiny_fmnist",
                 "--weights", str(TEACHER),
                 "--data", "demo:train", "--num-images", "32", "--num-blocks", "2", "--score-iterations", "3",
                 "--recovery-iterations", "3", "--repeats", "3", "--max-repeats", "6", "--eval-data", "demo:test",
                 "--eval-limit", "200", "--out", str(out), "-q"])
    assert code in (0, None)
    report = json.loads((out / "report.json").read_text())
    assert len(report["selection"]["blocks"]) == 2 and report["evaluation"]["teacher"]["top1"] > 0.8
    from practise import load_compressed

    small = load_compressed(out / "model.safetensors")
    assert len([m for m in small.encoder.layers if type(m).__name__ == "EncoderBlock"]) == 4
