import pytest
import torch

from helpers import tiny_resnet
from practise.export import arch_spec, load_compressed, read_metadata, save_compressed
from practise.surgery import drop_blocks


def test_compressed_file_loads_alone_with_same_outputs(tmp_path):
    teacher = tiny_resnet()
    student = drop_blocks(teacher, ["layer1.1", "layer3.2"]).eval()
    path = save_compressed(tmp_path / "m.safetensors", student, ["layer1.1", "layer3.2"], "layer3",
                           arch_spec(teacher), {"image_size": 16})
    loaded = load_compressed(path)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(loaded(x), student(x))
    assert loaded.practise_dropped == ["layer1.1", "layer3.2"] and read_metadata(path)["extra"]["image_size"] == 16
    assert isinstance(loaded.layer1[1], torch.nn.Identity)


def test_existing_output_is_not_overwritten(tmp_path):
    student = tiny_resnet()
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_compressed(path, student, [], "layer3", arch_spec(student))
    assert path.read_bytes() == b"precious"
    save_compressed(path, student, [], "layer3", arch_spec(student), overwrite=True)
    assert read_metadata(path)["dropped_blocks"] == []


def test_custom_model_needs_factory_or_instance(tmp_path):
    from helpers import Weird, weird_model

    model = weird_model()
    student = drop_blocks(model, ["trunk.1"])
    path = save_compressed(tmp_path / "c.safetensors", student, ["trunk.1"], "trunk", arch_spec(model))
    with pytest.raises(ValueError, match="records no architecture"):
        load_compressed(path)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(load_compressed(path, model=Weird())(x), student.eval()(x))
    path2 = save_compressed(tmp_path / "f.safetensors", student, ["trunk.1"], "trunk",
                            arch_spec(model, factory="helpers:Weird"))
    assert torch.equal(load_compressed(path2)(x), student(x))


def test_non_practise_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a practise compressed model"):
        load_compressed(tmp_path / "plain.safetensors")
