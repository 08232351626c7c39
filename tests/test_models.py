import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from practise.model_io import load_model
from practise.model_io import load_weights_, read_state_dict
from practise.models import create_model, list_models, register_model

# Parameter counts of torchvision's models (their documentation's figures).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "mobilenet_v2": 3_504_872}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_builtin_architectures_match_torchvision_sizes(name):
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


def test_torchvision_state_dict_keys():
    keys = set(create_model("resnet34").state_dict())
    for key in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer4.2.bn2.bias", "fc.weight", "fc.bias"]:
        assert key in keys
    keys = set(create_model("mobilenet_v2").state_dict())
    for key in ["features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                "features.2.conv.0.0.weight", "features.2.conv.1.0.weight", "features.2.conv.2.weight",
                "features.2.conv.3.running_mean", "features.18.1.weight", "classifier.1.weight"]:
        assert key in keys
    assert "layer1.0.downsample.0.weight" in create_model("resnet50").state_dict()


def test_torchvision_checkpoint_gives_same_logits():
    torchvision = pytest.importorskip("torchvision")
    for name in ["resnet18", "mobilenet_v2"]:
        theirs = getattr(torchvision.models, name)().eval()
        ours = create_model(name).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.randn(2, 3, 64, 64)
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_cifar_resnets_have_configurable_channels_and_classes():
    for name, blocks in [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)]:
        model = create_model(name, num_classes=7, in_channels=1)
        assert len(model.layer1) == blocks and model.layer3[0].conv1.out_channels == 64
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet20")(lambda: nn.Identity())
    with pytest.raises(ValueError, match="resnet56"):
        create_model("resnet57")
    assert {"resnet20", "resnet32", "resnet56", "mobilenet_v2"} <= set(list_models())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_round_trip(tmp_path, suffix):
    a, b = create_model("resnet20", num_classes=10), create_model("resnet20", num_classes=10)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": a.state_dict()}, path)
    else:
        save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(path))
    load_weights_(b, path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_weight_mismatch_names_missing_and_unexpected_keys(tmp_path):
    state = create_model("resnet20").state_dict()
    state["extra.weight"] = state.pop("fc.bias")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"missing keys \['fc.bias'\].*unexpected keys \['extra.weight'\]"):
        load_weights_(create_model("resnet20"), tmp_path / "w.pt")


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_not_executed(tmp_path, capsys):
    torch.save({"fc.weight": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights-only"):
        read_state_dict(tmp_path / "evil.pt")
    assert "pickled code ran" not in capsys.readouterr().out


def test_load_model_infers_classes_and_channels_from_weights(tmp_path):
    torch.save(create_model("resnet20", num_classes=4, in_channels=1).state_dict(), tmp_path / "w.pt")
    model = load_model("resnet20", str(tmp_path / "w.pt"))
    assert model.fc.out_features == 4 and model.conv1.in_channels == 1
    with pytest.raises(ValueError, match="shape mismatch"):
        load_model("resnet20", str(tmp_path / "w.pt"), num_classes=10)
