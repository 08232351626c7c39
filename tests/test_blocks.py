import pytest
import torch
import torch.nn as nn

from helpers import WEIRD_BLOCKS, Unit, weird_model
from practise.blocks import find_blocks
from practise.models import create_model
from practise.tracing import feature_chain, find_feature_layer, trace_model

AUTHORS_R50 = ["layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer2.3", "layer3.1", "layer3.2", "layer3.3",
               "layer3.4", "layer3.5", "layer4.1", "layer4.2"]
AUTHORS_MBV2 = [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]


def names(model, shape):
    return [b.name for b in find_blocks(model, torch.zeros(1, *shape))]


def test_builtin_candidates_match_the_authors_lists():
    assert names(create_model("resnet50"), (3, 64, 64)) == AUTHORS_R50
    assert names(create_model("mobilenet_v2"), (3, 64, 64)) == AUTHORS_MBV2
    # resnet34's layer1.0 keeps its input's shape too (no downsample): a legitimate extra candidate
    assert names(create_model("resnet34"), (3, 64, 64)) == ["layer1.0"] + [n for n in AUTHORS_R50]
    r56 = names(create_model("resnet56", in_channels=1), (1, 28, 28))
    assert len(r56) == 25 and "layer2.0" not in r56 and "layer1.0" in r56


def test_custom_model_blocks_found_and_non_blocks_rejected():
    model = weird_model()
    blocks = find_blocks(model, torch.zeros(1, 1, 16, 16))
    assert [b.name for b in blocks] == WEIRD_BLOCKS
    # shape-preserving but not blocks: a BatchNorm, a residual branch alone, a conv Sequential, a stage
    found = {b.name for b in blocks}
    assert not found & {"lonely_norm", "trunk.0.f", "trunk.2", "trunk"}
    assert blocks[0].params == sum(p.numel() for p in model.trunk[0].parameters())
    assert blocks[0].flops > 0 and blocks[0].shape == (1, 8, 16, 16)


def test_feature_layer_found_for_custom_model_and_chain_verified():
    model = weird_model()
    x = torch.zeros(1, 1, 16, 16)
    trace = trace_model(model, x)
    assert find_feature_layer(model, trace) == "trunk"
    chain = feature_chain(model, trace, "trunk", x)
    # functional relu between entry/lonely_norm and trunk: no exact chain from the root
    assert chain is None


def test_include_exclude_patterns_and_errors():
    model = create_model("resnet20")
    x = torch.zeros(1, 3, 32, 32)
    assert [b.name for b in find_blocks(model, x, include=["layer3.*"])] == ["layer3.1", "layer3.2"]
    assert [b.name for b in find_blocks(model, x, exclude=["layer1.*", "layer2.2"])] == ["layer2.1", "layer3.1", "layer3.2"]
    with pytest.raises(ValueError, match="layer9.1.*valid names: layer1.0"):
        find_blocks(model, x, include=["layer9.1"])


class InPlaceSkip(nn.Module):
    """x.relu_() changes the input before it is added: the skip is no longer identity."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        x.relu_()
        return x + y


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.unit = Unit(4)

    def forward(self, x):
        return self.unit(self.unit(x))


def test_undecidable_modules_are_not_candidates_and_each_is_logged(caplog):
    model = nn.Sequential(nn.Conv2d(1, 4, 1), InPlaceSkip(), Shared())
    trace = trace_model(model, torch.randn(1, 1, 8, 8))
    assert "in place" in trace.undecided["1"]
    assert "called 2 times" in trace.undecided["2.unit"]
    with caplog.at_level("WARNING", logger="practise.blocks"):
        assert [b.name for b in find_blocks(model, torch.randn(1, 1, 8, 8))] == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not a candidate: 1 (its input was modified in place" in logged  # was silent before
    assert "not a candidate: 2.unit (called 2 times" in logged


def test_tracing_leaves_model_as_found():
    model = weird_model().train()
    model.trunk[0].eval()
    before = {n: m.training for n, m in model.named_modules()}
    find_blocks(model, torch.zeros(1, 1, 16, 16))
    assert {n: m.training for n, m in model.named_modules()} == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
