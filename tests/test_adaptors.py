import torch

from helpers import tiny_resnet, weird_model
from practise.adaptors import Adaptor, adaptor_sites, insert_adaptors_
from practise.models import create_model
from practise.surgery import drop_blocks
from practise.tracing import feature_chain, find_feature_layer, trace_model


def sites(model, block, shape):
    x = torch.zeros(1, *shape)
    trace = trace_model(model, x)
    chain = feature_chain(model, trace, find_feature_layer(model, trace), x)
    return [(s.module, s.where) for s in adaptor_sites(model, block, trace, chain or trace.call_order)]


def test_resnet_basic_placement_follows_the_paper():
    assert sites(create_model("resnet34"), "layer2.2", (3, 64, 64)) == [
        ("layer2.0.conv2", "after"), ("layer2.0.downsample.0", "after"), ("layer2.1.conv2", "after"),
        ("layer2.3.conv1", "before"), ("layer3.0.conv1", "before"), ("layer3.0.downsample.0", "before")]
    # last stage: nothing after the stage
    assert sites(create_model("resnet34"), "layer4.2", (3, 64, 64)) == [
        ("layer4.0.conv2", "after"), ("layer4.0.downsample.0", "after"), ("layer4.1.conv2", "after")]


def test_resnet_bottleneck_placement_follows_the_paper():
    assert sites(create_model("resnet50"), "layer1.1", (3, 64, 64)) == [
        ("layer1.0.conv3", "after"), ("layer1.0.downsample.0", "after"), ("layer1.2.conv1", "before"),
        ("layer2.0.conv1", "before"), ("layer2.0.downsample.0", "before")]


def test_mobilenet_placement_follows_the_paper():
    # features.4-6 have width 32; features.7 is the first block whose width changes
    assert sites(create_model("mobilenet_v2"), "features.5", (3, 64, 64)) == [
        ("features.4.conv.2", "after"), ("features.6.conv.0.0", "before"), ("features.7.conv.0.0", "before")]
    # t=1 block has no expansion conv: the depthwise conv reads the stream
    assert sites(create_model("mobilenet_v2"), "features.3", (3, 64, 64)) == [
        ("features.2.conv.2", "after"), ("features.4.conv.0.0", "before")]


def test_generic_placement_on_the_residual_stream():
    got = sites(weird_model(), "trunk.1", (1, 16, 16))
    # trunk.0 writes (after); trunk.2 (a conv Sequential, same shape, same parent), trunk.3 and the
    # first unit after the group (trunk.4, which changes the shape) read (before)
    assert got == [("trunk.0", "after"), ("trunk.2", "before"), ("trunk.3", "before"), ("trunk.4", "before")]


def test_identity_adaptors_do_not_change_outputs():
    teacher = tiny_resnet()
    x = torch.zeros(1, 1, 16, 16)
    trace = trace_model(teacher, x)
    chain = feature_chain(teacher, trace, "layer3", x)
    student = drop_blocks(teacher, ["layer2.1"]).eval()
    reference = student(torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    adaptors = insert_adaptors_(student, adaptor_sites(teacher, "layer2.1", trace, chain))
    assert len(adaptors) == 5 and all(isinstance(a, Adaptor) for a in adaptors)
    out = student(torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(out, reference, atol=1e-6)
