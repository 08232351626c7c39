import pytest
import torch
from practise.surgery import PassThrough

from helpers import tiny_resnet
from practise.model_io import arch_spec, load_compressed, read_metadata, save_compressed
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
    assert isinstance(loaded.layer1[1], PassThrough)


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
    from practise.models import registry

    model = weird_model()
    student = drop_blocks(model, ["trunk.1"])
    path = save_compressed(tmp_path / "c.safetensors", student, ["trunk.1"], "trunk", arch_spec(model))
    with pytest.raises(ValueError, match="records no architecture"):
        load_compressed(path)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(load_compressed(path, model=Weird())(x), student.eval()(x))
    path2 = save_compressed(tmp_path / "f.safetensors", student, ["trunk.1"], "trunk",
                            arch_spec(model, factory="helpers:Weird"))
    # the recorded factory name is information only: loading never imports it
    with pytest.raises(ValueError, match="never imports code"):
        load_compressed(path2)
    assert torch.equal(load_compressed(path2, factory=Weird)(x), student(x))
    # ... unless the caller registered an architecture under that name
    registry.register_model("helpers:Weird")(lambda: Weird())
    try:
        assert torch.equal(load_compressed(path2)(x), student(x))
    finally:
        registry.MODELS.unregister("helpers:Weird")


def _tampered(tmp_path, name="t.safetensors", **changes):
    """A compressed resnet20 file whose metadata was edited after writing."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    teacher = tiny_resnet()
    good = save_compressed(tmp_path / f"good-{name}", drop_blocks(teacher, ["layer1.1"]), ["layer1.1"], "layer3",
                           arch_spec(teacher), {"image_size": 16, "channels": 1})
    with safe_open(str(good), "pt") as handle:
        meta = handle.metadata()
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    save_file(load_file(str(good)), str(tmp_path / name), metadata=meta)
    return tmp_path / name


def test_a_factory_in_the_file_is_never_imported_or_called(tmp_path):
    marker = tmp_path / "pwned"
    # the file names a function that would create the marker file if it were ever called
    path = _tampered(tmp_path, arch={"factory": "pathlib:Path.touch", "kwargs": {"self": str(marker)}})
    for call in (lambda: load_compressed(path), lambda: read_metadata(path)):
        try:
            call()
        except ValueError:
            pass
    path2 = _tampered(tmp_path, "u.safetensors", arch={"factory": "subprocess:run",
                                                       "kwargs": {"args": f"touch {marker}", "shell": True}})
    with pytest.raises(ValueError, match="never imports code"):
        load_compressed(path2)
    assert not marker.exists()


@pytest.mark.parametrize("changes, message", [
    ({"arch": {"name": "os.system", "kwargs": {}}}, "unknown architecture 'os.system'"),
    ({"arch": {"name": "resnet20", "kwargs": {"num_classes": 10, "evil": 1}}}, "takes no argument 'evil'"),
    ({"arch": {"name": "resnet20", "kwargs": {"num_classes": 10 ** 12}}}, "unsupported value"),
    ({"arch": {"name": "resnet20", "kwargs": {"num_classes": 11, "in_channels": 1}}}, "tensor shapes do not match"),
    ({"arch": {"name": "resnet20", "kwargs": {"num_classes": [1, 2]}}}, "unsupported value"),
    ({"arch": "[[[["}, "not valid JSON"),
    ({"dropped_blocks": ["layer1.1", "__class__"]}, "is not a module of the architecture"),
    ({"dropped_blocks": ["layer1.1; rm -rf /"]}, "is not a module name"),
    ({"dropped_blocks": ["layer1.1", "layer1.1"]}, "lists a block twice"),
    ({"dropped_blocks": ["layer1"]}, "do not match the architecture"),
    ({"dropped_blocks": '"layer1.1"'}, "must be a list"),
    ({"feature_layer": "nowhere"}, "feature layer 'nowhere' is not a module"),
    ({"extra": {"image_size": -3}}, "extra 'image_size' has an invalid value"),
    ({"extra": {"std": [0.0]}}, "extra 'std' has an invalid value"),
    ({"extra": {"run": "rm"}}, "unknown extra key 'run'"),
    ({"format": "practise-compressed/99"}, "not a practise compressed model"),
    ({"surprise": "1"}, "unknown metadata key 'surprise'"),
    ({"dropped_blocks": None}, "metadata key 'dropped_blocks' is missing"),
])
def test_tampered_metadata_is_damaged_or_untrusted(tmp_path, changes, message):
    from practise.model_io import UntrustedModelFile

    path = _tampered(tmp_path, **changes)
    before = path.read_bytes()
    with pytest.raises(UntrustedModelFile, match=message) as info:
        load_compressed(path)
    assert str(info.value).startswith(f"damaged or untrusted model file {path}")
    assert path.read_bytes() == before


def test_dropped_module_must_be_a_residual_block(tmp_path):
    from practise.model_io import UntrustedModelFile

    teacher = tiny_resnet()
    # layer1.0.conv1's weights are absent too, so only the trace can tell this is no block
    student = drop_blocks(teacher, ["layer1.1"])
    path = save_compressed(tmp_path / "m.safetensors", student, ["layer1.1"], "layer3", arch_spec(teacher),
                           {"image_size": 16, "channels": 1})
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("layer1.0.bn1")}
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    meta["dropped_blocks"] = json.dumps(["layer1.1", "layer1.0.bn1"])
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(UntrustedModelFile, match="'layer1.0.bn1' is not a droppable residual block"):
        load_compressed(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"garbage that is not a header", b"\xff" * 64])
def test_damaged_model_files_are_one_clear_error(tmp_path, content):
    from practise.model_io import UntrustedModelFile

    good = save_compressed(tmp_path / "g.safetensors", tiny_resnet(), [], "layer3", arch_spec(tiny_resnet()))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    broken = tmp_path / "b.safetensors"
    broken.write_bytes(content)
    for path in (broken, truncated):
        with pytest.raises(UntrustedModelFile, match=str(path)) as info:
            load_compressed(path)
        assert "\n" not in str(info.value)


def test_non_practise_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a practise compressed model"):
        load_compressed(tmp_path / "plain.safetensors")


def test_a_model_file_that_would_not_reload_to_the_pruned_model_is_never_kept(tmp_path, monkeypatch):
    import practise.artifacts as artifacts
    from practise import CompressConfig, LatencyConfig, RecoveryConfig, ScoringConfig, compress
    from helpers import tiny_set

    result = compress(tiny_resnet(), tiny_set(16), CompressConfig(
        num_blocks=1, criterion="last", scoring=ScoringConfig(iterations=2), recovery=RecoveryConfig(iterations=2),
        latency=LatencyConfig(repeats=3, max_repeats=6)))
    written = artifacts.write_compressed_outputs(result, tiny_resnet(), out_dir=tmp_path / "good")
    assert written.paths["model.safetensors"].is_file() and not list((tmp_path / "good").glob(".unverified*"))
    monkeypatch.setattr(artifacts, "load_compressed", lambda path, **kw: tiny_resnet())  # the unpruned teacher
    with pytest.raises(RuntimeError, match="does not reload to the pruned model"):
        artifacts.write_compressed_outputs(result, tiny_resnet(), out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.safetensors").exists() and not list((tmp_path / "bad").glob(".unverified*"))
