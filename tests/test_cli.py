import json

import pytest
import torch
from practise.surgery import PassThrough

from helpers import weird_model, WEIRD_BLOCKS, tiny_set
from practise.blocks import count_flops
from practise.cli import main
from practise.model_io import load_compressed
from practise.latency import LatencyConfig, LatencyStats, noise_warning
from practise.latency.savings import UNCERTAIN
from practise.pipeline import CompressConfig, compress
from practise.recovery import RecoveryConfig
from practise.scoring import ScoringConfig

QUICK = ["--score-iterations", "3", "--recovery-iterations", "3", "--repeats", "3", "--warmup", "1",
         "--batch-size", "2", "--device", "cpu", "--image-size", "16", "-q"]


@pytest.mark.slow
def test_compress_end_to_end_on_an_image_folder(tmp_path, image_folder, weights, capsys):
    out = tmp_path / "out"
    code = main(["-q", "compress", "--model", "resnet20", "--weights", str(weights), "--data", str(image_folder),
                 "--num-images", "20", "--target-latency", "10%", "--eval-data", str(image_folder),
                 "--out", str(out)] + QUICK)
    assert code == 0
    printed = capsys.readouterr().out
    assert "latency reduction (measured)" in printed and "dropped blocks" in printed
    report = json.loads((out / "report.json").read_text())
    chosen = report["selection"]["blocks"]
    assert chosen and report["selection"]["measured_reduction"] >= 0.10
    assert len(report["tiny_set"]["images"]) == 20 and report["after"]["params"] < report["before"]["params"]
    assert {c["name"] for c in report["candidates"] if c["chosen"]} == set(chosen)
    assert "top1" in report["evaluation"]["compressed"] and (out / "blocks.png").stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "Candidate blocks" in markdown
    card = (out / "README.md").read_text()  # the model card: what was dropped, what it cost, how to load it
    assert all(f"`{b}`" in card for b in chosen) and "top-1 accuracy" in card and "practise.load_compressed" in card
    assert "practise -q compress --model resnet20" in card
    # the noise warning follows the final measurement, in the JSON, the Markdown and the printed summary
    lat = report["latency"]
    low, high = report["selection"]["measured_interval"]  # the warning follows the paired interval
    decided = lat["selection_settings"].get("stopped_by") == "decided"  # wholly on one side of the target
    noisy = (high - low) / 2 > UNCERTAIN and not decided
    assert (lat["warning"] is not None) == noisy == ("**Warning:**" in markdown) == ("warning:" in printed)
    model = load_compressed(out / "model.safetensors")
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 10)
    assert main(["evaluate", "--model", str(out / "model.safetensors"), "--data", str(image_folder),
                 "--teacher", "resnet20", "--teacher-weights", str(weights)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["images"] == 24 and 0 <= result["model"]["agreement_with_teacher"] <= 1
    # a second run refuses to overwrite, before doing any work
    before = (out / "model.safetensors").read_bytes()
    assert main(["compress", "--model", "resnet20", "--weights", str(weights), "--data", str(image_folder),
                 "--num-blocks", "1", "--out", str(out)] + QUICK) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["blocks", "--model", "resnet99"], "unknown model 'resnet99'; valid choices: mobilenet_v2"),
    (["blocks", "--model", "resnet20", "--include", "layer7.*"], "'layer7.*' matches no candidate; valid names: layer1.0"),
    (["latency", "--model", "resnet20", "--drop", "layer9.9", "--repeats", "1"], "unknown block 'layer9.9'"),
    (["score", "--model", "resnet20", "--data", "/no/such/folder"], "image folder not found: /no/such/folder"),
])
def test_bad_input_exits_2_with_one_line_reason(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_blocks_and_latency_commands(capsys):
    assert main(["blocks", "--model", "resnet56", "--in-channels", "1", "--image-size", "28", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["blocks"]) == 25 and listing["feature_layer"] == "layer3"
    assert main(["latency", "--model", "resnet20", "--drop", "layer3.1,layer3.2", "--repeats", "3", "--warmup", "1",
                 "--batch-size", "2", "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["latency_ms"]) == {"<full model>", "dropped"} and "reduction" in result
    full, dropped = (LatencyStats(**result["latency_ms"][k]) for k in ("<full model>", "dropped"))
    assert result["warning"] == noise_warning(full, dropped)


def test_python_api_on_a_custom_model():
    model = weird_model()
    config = CompressConfig(num_blocks=2, device="cpu", scoring=ScoringConfig(iterations=5, batch_size=16),
                            recovery=RecoveryConfig(iterations=5, batch_size=16),
                            latency=LatencyConfig(batch_size=2, repeats=3, warmup=1))
    result = compress(model, tiny_set(32), config)
    assert [b.name for b in result.candidates] == WEIRD_BLOCKS and result.feature_layer == "trunk"
    assert len(result.selection.blocks) == 2 and set(result.selection.blocks) <= set(WEIRD_BLOCKS)
    for name in result.selection.blocks:
        assert isinstance(result.model.get_submodule(name), PassThrough)
        assert not isinstance(model.get_submodule(name), PassThrough)  # the teacher is untouched
    assert result.report.after.params == result.report.before.params - result.report.after.params_removed
    example = torch.zeros(1, 1, 16, 16)
    assert result.report.before.flops == count_flops(model, example)[0]
    assert result.report.after.flops == count_flops(result.model, example)[0] < result.report.before.flops
    assert result.model(torch.randn(2, 1, 16, 16)).shape == (2, 5)


def test_train_command_resumes_and_writes_a_model_card(tmp_path, image_folder, capsys):
    out, work = tmp_path / "t.safetensors", tmp_path / "work"
    common = ["train", "--model", "resnet20", "--in-channels", "1", "--num-classes", "3", "--data", str(image_folder),
              "--eval-data", str(image_folder), "--image-size", "16", "--train-batch-size", "8", "--device", "cpu",
              "--workdir", str(work), "--out", str(out), "-q"]
    assert main(common + ["--epochs", "1"]) == 0
    first = json.loads(out.with_suffix(".json").read_text())["history"]
    assert main(common + ["--epochs", "2"]) == 2 and "exists" in capsys.readouterr().err
    assert main(common + ["--epochs", "2", "--overwrite"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert len(card["history"]) == 2 and card["history"][0] == first[0]  # epoch 1 was not redone
    assert card["arch"] == {"name": "resnet20", "kwargs": {"num_classes": 3, "in_channels": 1}}
    assert "test top-1" in out.with_suffix(".md").read_text()
    from practise.model_io import load_model

    loaded = load_model("resnet20", str(out))
    assert loaded.fc.out_features == 3
    # the preprocessing travels in the weights file's metadata, even without the model card
    recorded = {"image_size": 16, **card["normalization"]}
    assert loaded.practise_extra == recorded
    out.with_suffix(".json").unlink()
    assert load_model("resnet20", str(out)).practise_extra == recorded


def test_shipped_teachers_carry_their_preprocessing_so_data_free_needs_no_flags(weights):
    import argparse
    from pathlib import Path

    import practise
    from practise.cli.common import transforms_for
    from practise.model_io import load_model

    import shutil

    path = Path(practise.__file__).parent / "assets" / "teachers" / "resnet20_fashion_mnist.safetensors"
    copied = weights.parent / "copied_teacher.safetensors"  # without its model card: the metadata suffices
    shutil.copy(path, copied)
    for teacher in (load_model("resnet20", str(path)), load_model("resnet20", str(copied))):
        flags = argparse.Namespace(image_size=None, mean=None, std=None)
        config = transforms_for(flags, teacher, None).config
        assert (config.image_size, config.mean, config.std) == (28, (0.286,), (0.353,))
    # a plain state dict records nothing: the architecture's defaults apply and flags still win
    plain = load_model("resnet20", str(weights))
    assert not hasattr(plain, "practise_extra")
    flags.mean, flags.std, flags.image_size = (0.5,), (0.25,), 16
    assert transforms_for(flags, teacher, None).config.mean == (0.5,)


@pytest.mark.slow
def test_data_free_compress_synthesizes_then_compresses(tmp_path, weights):
    out = tmp_path / "df"
    code = main(["compress", "--model", "resnet20", "--weights", str(weights), "--data-free", "12", "--synth-steps",
                 "3", "--synth-batch-size", "6", "--num-blocks", "1", "--mean", "0.5", "--std", "0.25",
                 "--out", str(out)] + QUICK)
    assert code == 0
    assert len(list((out / "synthesized").rglob("*.png"))) == 12
    report = json.loads((out / "report.json").read_text())
    assert len(report["tiny_set"]["images"]) == 12 and report["tiny_set"]["labelled"]
    assert load_compressed(out / "model.safetensors")(torch.randn(1, 1, 16, 16)).shape == (1, 10)


def test_synthesize_command_and_its_errors(tmp_path, weights, capsys):
    out = tmp_path / "synth"
    assert main(["synthesize", "--model", "resnet20", "--weights", str(weights), "--num-images", "3",
                 "--synth-steps", "2", "--image-size", "16", "--mean", "0.5", "--std", "0.25", "--out", str(out),
                 "-q"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out and len(list(out.rglob("*.png"))) == 3
    assert main(["synthesize", "--model", "resnet20", "--weights", str(weights), "--num-images", "3",
                 "--image-size", "16", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["compress", "--model", "resnet20", "--num-blocks", "1", "--out", str(tmp_path / "x")]) == 2
    assert "exactly one of --data" in capsys.readouterr().err
