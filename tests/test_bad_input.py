"""Bad input, across every subcommand and the Python API.

Each CLI case asserts: exit code 2, exactly one line on stderr that contains the expected
reason, no traceback, every input file byte-identical afterwards, and no output except a
resumable work folder. Each API case asserts the documented exception and its message.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from helpers import tiny_resnet, write_png_folder
from practise.cli import main

PRE = ["--image-size", "16", "--mean", "0.5", "--std", "0.25"]
TIMING = ["--repeats", "2", "--warmup", "0", "--batch-size", "2"]
# Fast settings put right after the subcommand, so a case's own (bad) value, given later, wins.
QUICK = {"blocks": ["-q", *PRE[:2]], "latency": ["-q", "--device", "cpu", *PRE[:2], *TIMING],
         "score": ["-q", "--device", "cpu", *PRE, *TIMING, "--score-iterations", "2"],
         "compress": ["-q", "--device", "cpu", *PRE, *TIMING, "--score-iterations", "2", "--recovery-iterations", "2",
                      "--synth-steps", "1"],
         "synthesize": ["-q", "--device", "cpu", *PRE, "--synth-steps", "1"],
         "train": ["-q", "--device", "cpu"], "evaluate": ["-q", "--device", "cpu", *PRE], "demo": ["-q", "--device", "cpu"]}

class _RunsCode:
    """Unpickling this would create the marker file: a crafted checkpoint."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One folder of good and bad inputs, shared by every case (none may change it)."""
    root = tmp_path_factory.mktemp("inputs")
    write_png_folder(root / "images")
    write_png_folder(root / "flat", classes=0, per_class=12, seed=1)
    (root / "empty_dir").mkdir()
    teacher = tiny_resnet()
    torch.save(teacher.state_dict(), root / "teacher.pth")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(root / "teacher.safetensors"))
    nan_state = teacher.state_dict()
    nan_state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan_state, root / "nan.pth")
    torch.save({"state_dict": teacher.state_dict(), "hook": _RunsCode(str(root.parent / "MARKER"))}, root / "pickle.pth")
    (root / "empty.pth").write_bytes(b"")
    (root / "garbage.pth").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "garbage.safetensors").write_bytes(b"\xff" * 40)
    good = (root / "teacher.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(good[: len(good) // 3])
    (root / "notes.txt").write_text("not an image, not weights\n")
    from practise.model_io import arch_spec, save_compressed
    from practise.surgery import drop_blocks

    save_compressed(root / "compressed.safetensors", drop_blocks(teacher, ["layer1.1"]), ["layer1.1"], "layer3",
                    arch_spec(teacher), {"image_size": 16, "channels": 1, "mean": [0.5], "std": [0.25]})
    _tamper(root / "compressed.safetensors", root / "factory.safetensors",
            arch={"factory": "subprocess:run", "kwargs": {"args": f"touch {root.parent / 'MARKER'}", "shell": True}})
    _tamper(root / "compressed.safetensors", root / "bad_block.safetensors", dropped_blocks=["layer1.1", "fc"])
    (root / "done").mkdir()
    (root / "done" / "model.safetensors").write_bytes(b"a previous result")
    return root


def _tamper(source, target, **changes):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as handle:
        meta = handle.metadata()
    meta.update({k: json.dumps(v) for k, v in changes.items()})
    save_file(load_file(str(source)), str(target), metadata=meta)


def _snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


R20 = ["--model", "resnet20", "--weights", "{in}/teacher.pth"]
DATA = ["--data", "{in}/images", "--num-images", "12"]
COMPRESS = ["compress", *R20, *DATA, "--out", "{out}"]
CUDA = torch.cuda.is_available()

CASES = [
    # model names and model files
    (["blocks", "--model", "resnet99"], "unknown model 'resnet99'; valid choices"),
    (["blocks", "--model", "{in}/missing.safetensors"], "model file not found"),
    (["blocks"], "--model is required"),
    (["blocks", "--model", "{in}/factory.safetensors"], "never imports code"),
    (["evaluate", "--model", "{in}/factory.safetensors", "--data", "{in}/images"], "never imports code"),
    (["latency", "--model", "{in}/bad_block.safetensors"], "damaged or untrusted model file {in}/bad_block"),
    (["blocks", "--model", "{in}/garbage.safetensors"], "damaged or untrusted model file"),
    (["blocks", "--model", "{in}/truncated.safetensors"], "damaged or untrusted model file"),
    (["blocks", "--model", "{in}/teacher.safetensors"], "is not a practise compressed model"),
    (["blocks", "--model", "{in}/notes.txt"], "is not a practise compressed model"),
    (["blocks", "--model", "{in}/compressed.safetensors", "--weights", "{in}/teacher.pth"], "--weights is not used"),
    # weights files
    (["blocks", "--model", "resnet20", "--weights", "{in}/pickle.pth"], "not a weights-only checkpoint"),
    (["score", *R20[:3], "{in}/pickle.pth", *DATA], "not a weights-only checkpoint"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/empty.pth"], "is empty"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/garbage.pth"], "damaged or not a PyTorch checkpoint"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/garbage.safetensors"], "damaged or not a .safetensors"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/truncated.safetensors"], "damaged or not a .safetensors"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/nan.pth"], "'layer2.0.conv1.weight' holds 1 NaN/Inf"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/notes.txt"], "unsupported weights file 'notes.txt'"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/nothing.pth"], "weights file not found"),
    (["blocks", "--model", "resnet56", "--weights", "{in}/teacher.pth"], "does not match the model: missing keys"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/teacher.pth", "--num-classes", "7"], "shape mismatch"),
    (["blocks", "--model", "resnet20", "--num-classes", "0"], "--num-classes: must be at least 1, got 0"),
    (["blocks", "--model", "resnet20", "--weights", "{in}/images"], "is a folder; give the weights file itself"),
    (["blocks", "--model", "{in}/images"], "is a folder; give an architecture name"),
    (["score", *R20, *DATA, "--in-channels", "3"], "shape mismatch"),
    (["score", *R20, *DATA, "--seed", "x"], "--seed: invalid int value: 'x'"),
    # devices
    (["blocks", "--model", "resnet20", "--device", "tpu"], "'tpu'"),
    (["latency", "--model", "resnet20", "--device", "cuda:7"], "cuda:7"),
    (["latency", "--model", "resnet20", "--device", "mps"], "'mps'"),
    pytest.param(["latency", "--model", "resnet20", "--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(CUDA, reason="this machine has CUDA")),
    pytest.param([*COMPRESS, "--target-latency", "22%", "--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(CUDA, reason="this machine has CUDA")),
    # latency settings
    (["latency", "--model", "resnet20", "--drop", "layer9.9"], "unknown block 'layer9.9'"),
    (["latency", "--model", "resnet20", "--drop", "conv1"], "unknown block 'conv1'; droppable blocks"),
    (["latency", "--model", "resnet20", "--threads", "0"], "--threads: must be at least 1, got 0"),
    (["latency", "--model", "resnet20", "--batch-size", "-1"], "--batch-size: must be at least 1, got -1"),
    (["latency", "--model", "resnet20", "--repeats", "0"], "--repeats: must be at least 1, got 0"),
    (["latency", "--model", "resnet20", "--warmup", "-2"], "--warmup: must be at least 0, got -2"),
    (["latency", "--model", "resnet20", "--repeats", "many"], "--repeats: 'many' is not a whole number"),
    (["latency", "--model", "resnet20", "--dtype", "float64"], "invalid choice: 'float64'"),
    (["latency", "--model", "resnet20", "--image-size", "0"], "--image-size: must be at least 1, got 0"),
    (["latency", "--model", "resnet20", "--latency-backend", "tensorrt"], "invalid choice: 'tensorrt'"),
    (["blocks", "--model", "resnet20", "--latency", "--latency-resolution", "0"],
     "--latency-resolution: must be a finite number > 0, got '0'"),
    (["blocks", "--model", "resnet20", "--latency", "--latency-resolution", "2"],
     "latency resolution must be a fraction between 0 and 1, got 2.0"),
    (["blocks", "--model", "resnet20", "--latency", "--repeats", "20", "--max-repeats", "5"],
     "max_repeats (5) must be at least repeats (20)"),
    (["latency", "--model", "resnet20", "--latency-backend", "onnxruntime", "--dtype", "bfloat16"],
     "the onnxruntime latency backend runs float32 on the CPU"),
    (["export", "--model", "resnet20", "--out", "{out}", "--formats", "tflite"], "unknown format 'tflite'"),
    (["export", "--model", "resnet20", "--out", "{out}", "--tolerance", "0"], "--tolerance: must be a finite number > 0"),
    (["compress", "--model", "resnet20", "--data", "{in}/images", "--num-blocks", "1", "--out", "{out}",
      "--criterion", "greedy"], "invalid choice: 'greedy'"),
    (["compress", "--model", "resnet20", "--data", "{in}/images", "--num-blocks", "1", "--out", "{out}",
      "--score-autocast", "fp8"], "invalid choice: 'fp8'"),
    # data and the tiny set
    (["score", *R20, "--data", "{in}/images", "--num-images", "0"], "--num-images/--num-examples: must be at least 1, got 0"),
    (["score", *R20, "--data", "{in}/images", "--num-images", "-5"], "--num-images/--num-examples: must be at least 1, got -5"),
    (["score", *R20, "--data", "/no/such/folder"], "image folder not found: /no/such/folder"),
    (["score", *R20, "--data", "{in}/notes.txt"], "not a folder"),
    (["score", *R20, "--data", "{in}/empty_dir"], "no images found in"),
    (["score", *R20, "--data", "demo:validation"], "unknown demo split 'validation'; valid choices: train, test"),
    (["score", *R20, "--data", "fashion-mnist:dev"], "unknown Fashion-MNIST split 'dev'"),
    (["score", *R20, *DATA, "--mean", "0.5,abc"], "--mean: '0.5,abc' is not a comma-separated list of numbers"),
    (["score", *R20, *DATA, "--std", "0"], "--std: '0' must hold finite numbers, all above 0"),
    (["score", *R20, *DATA, "--std", "nan"], "--std: 'nan' must hold finite numbers"),
    (["score", *R20, *DATA, "--mean", "0.1,0.2", "--std", "0.3"], "mean and std need 1 value"),
    (["score", *R20, *DATA, "--image-size", "99999"], "image size must be between 1 and 16384"),
    # scoring settings and outputs
    (["score", *R20, *DATA, "--score-iterations", "0"], "--score-iterations: must be at least 1, got 0"),
    (["score", *R20, *DATA, "--score-lr", "-0.1"], "--score-lr: must be a finite number >= 0"),
    (["score", *R20, *DATA, "--score-lr", "inf"], "--score-lr: must be a finite number >= 0"),
    (["score", *R20, *DATA, "--score-protocol", "fast"], "invalid choice: 'fast'"),
    (["score", *R20, *DATA, "--include", "layer7.*"], "'layer7.*' matches no candidate"),
    (["score", *R20, *DATA, "--exclude", "layer*"], "--include/--exclude leave no candidate block; the candidates are"),
    (["score", *R20, *DATA, "--feature-layer", "nowhere"], "unknown feature layer 'nowhere'"),
    (["score", *R20, *DATA, "--out", "{in}/images"], "is a folder; give a file name"),
    (["score", *R20, *DATA, "--out", "{in}/notes.txt"], "exists; pass --overwrite"),
    (["score", *R20, *DATA, "--workdir", "{in}/notes.txt"], "--workdir {in}/notes.txt is a file"),
    # compress: target, blocks, recovery, outputs
    (["compress", *R20, *DATA, "--target-latency", "22%", "--out", "{out}", "--data-free", "5"], "give exactly one of --data"),
    (["compress", *R20, "--target-latency", "22%", "--out", "{out}"], "give exactly one of --data"),
    (["compress", *R20, *DATA, "--out", "{out}"], "one of the arguments --target-latency --num-blocks is required"),
    ([*COMPRESS, "--target-latency", "150%"], "must lie strictly between 0% and 100%"),
    ([*COMPRESS, "--target-latency", "0"], "must lie strictly between 0% and 100%"),
    ([*COMPRESS, "--target-latency", "fast"], "latency target 'fast' is not a number"),
    ([*COMPRESS, "--num-blocks", "0"], "--num-blocks: must be at least 1, got 0"),
    ([*COMPRESS, "--num-blocks", "99"], "cannot drop 99 blocks: the model has"),
    ([*COMPRESS, "--target-latency", "22%", "--recovery", "magic"], "invalid choice: 'magic'"),
    ([*COMPRESS, "--target-latency", "22%", "--recovery-iterations", "-1"], "--recovery-iterations: must be at least 0"),
    ([*COMPRESS, "--target-latency", "22%", "--recovery-lr", "nan"], "--recovery-lr: must be a finite number"),
    (["compress", *R20, "--data", "{in}/flat", "--target-latency", "22%", "--recovery", "ce", "--out", "{out}"],
     "this tiny set has no labels"),
    (["compress", *R20, *DATA, "--target-latency", "22%", "--out", "{in}/notes.txt"], "is a file, not a folder"),
    (["compress", *R20, *DATA, "--target-latency", "22%", "--out", "{in}/notes.txt/sub"], "cannot be made"),
    (["compress", *R20, *DATA, "--target-latency", "22%", "--out", "{in}/done"], "output files exist"),
    (["compress", *R20, *DATA, "--target-latency", "22%", "--out", "{out}", "--eval-data", "/no/eval"],
     "image folder not found: /no/eval"),
    ([*COMPRESS, "--target-latency", "22%", "--eval-limit", "0"], "--eval-limit: must be at least 1, got 0"),
    ([*COMPRESS[:4], "{in}/nan.pth", *COMPRESS[5:], "--target-latency", "22%"], "NaN/Inf"),
    # data-free synthesis
    (["compress", *R20, "--data-free", "0", "--target-latency", "22%", "--out", "{out}"], "--data-free: must be at least 1"),
    (["compress", *R20, "--data-free", "4", "--synth-lr", "0", "--target-latency", "22%", "--out", "{out}"],
     "--synth-lr: must be a finite number > 0"),
    (["compress", *R20, "--data-free", "4", "--jitter", "-1", "--num-blocks", "1", "--out", "{out}"],
     "--jitter: must be at least 0, got -1"),
    (["compress", *R20, "--data-free", "4", "--tv-weight", "-1", "--num-blocks", "1", "--out", "{out}"],
     "--tv-weight: must be a finite number >= 0"),
    (["synthesize", *R20, "--num-images", "0", "--out", "{out}"], "--num-images: must be at least 1, got 0"),
    (["synthesize", *R20, "--out", "{in}/notes.txt"], "is a file, not a folder"),
    (["synthesize", *R20, "--num-images", "2", "--out", "{in}/images"], "is not empty"),
    # train
    (["train", "--model", "resnet20", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{out}/m.pth"],
     "must end in .safetensors"),
    (["train", "--model", "resnet20", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{out}/m.safetensors",
      "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["train", "--model", "resnet20", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{out}/m.safetensors",
      "--image-size", "16", "--train-batch-size", "1000"], "fewer than one batch"),
    (["train", "--model", "resnet20", "--data", "{in}/flat", "--eval-data", "{in}/images", "--out", "{out}/m.safetensors",
      "--image-size", "16"], "is unlabelled; training needs one subfolder per class"),
    (["train", "--model", "resnet99", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{out}/m.safetensors"],
     "unknown model 'resnet99'"),
    (["train", "--model", "resnet20", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{out}/m.safetensors",
      "--lr", "0"], "--lr: must be a finite number > 0"),
    (["train", "--model", "resnet20", "--data", "{in}/images", "--eval-data", "{in}/images", "--out", "{in}/teacher.safetensors"],
     "exists; pass --overwrite"),
    # evaluate and demo
    (["evaluate", *R20, "--data", "/no/such/eval"], "image folder not found"),
    (["evaluate", *R20, "--data", "{in}/images", "--teacher", "resnet99"], "unknown model 'resnet99'"),
    (["evaluate", *R20, "--data", "{in}/images", "--eval-limit", "-1"], "--eval-limit: must be at least 1"),
    (["demo", "--num-images", "0", "--out", "{out}"], "--num-images: must be at least 1, got 0"),
    (["demo", "--target-latency", "2", "--out", "{out}"], "must lie strictly between"),
    (["demo", "--out", "{in}/notes.txt"], "is a file, not a folder"),
    (["demo", "--out", "{out}", "--device", "cuda:3"], "cuda:3"),
    (["compres", "--model", "resnet20"], "invalid choice: 'compres'"),
]


@pytest.mark.parametrize("args, message", CASES)
def test_cli_bad_input(inputs, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    fill = {"{in}": str(inputs), "{out}": str(out)}

    def expand(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    argv = [expand(a) for a in args]
    argv = argv[:1] + QUICK.get(argv[0], []) + argv[1:]
    before = _snapshot(inputs)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits; its code and message are checked the same way
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert expand(message) in err, err
    assert _snapshot(inputs) == before, "an input file was changed"
    assert not (inputs.parent / "MARKER").exists(), "a crafted file ran code"
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert set(leftovers) <= {"work"}, leftovers


def test_pickle_refusal_never_advises_running_the_file(inputs, capsys):
    assert main(["blocks", "--model", "resnet20", "--weights", str(inputs / "pickle.pth")]) == 2
    err = capsys.readouterr().err
    assert "weights_only=False" not in err and "convert it to .safetensors" in err
    assert not (inputs.parent / "MARKER").exists()


# ---- the Python API: the documented exception, naming the bad value --------------------

def _api_cases():
    from practise.data import TensorSource, TransformConfig, build_tiny_set
    from practise.device import resolve_device
    from practise.latency import LatencyConfig
    from practise.pipeline import CompressConfig
    from practise.recovery import RecoveryConfig
    from practise.scoring import ScoringConfig
    from practise.synthesis import SynthesisConfig

    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    return [
        (lambda: CompressConfig(), ValueError, "give exactly one of target_latency"),
        (lambda: CompressConfig(num_blocks=0), ValueError, "at least 1, got 0"),
        (lambda: CompressConfig(target_latency=1.5), ValueError, "between 0% and 100%"),
        (lambda: CompressConfig(target_latency=-0.1), ValueError, "got -10%"),
        (lambda: LatencyConfig(threads=0), ValueError, "threads must be at least 1, got 0"),
        (lambda: LatencyConfig(batch_size=0), ValueError, "batch size must be at least 1, got 0"),
        (lambda: LatencyConfig(dtype="int8"), ValueError, "unknown dtype 'int8'; valid choices"),
        (lambda: ScoringConfig(iterations=0), ValueError, "iterations must be at least 1, got 0"),
        (lambda: ScoringConfig(protocol="quick"), ValueError, "unknown scoring protocol 'quick'"),
        (lambda: RecoveryConfig(method="magic"), ValueError, "unknown recovery method 'magic'; valid choices"),
        (lambda: RecoveryConfig(lr=float("inf")), ValueError, "lr must be finite and >= 0, got inf"),
        (lambda: RecoveryConfig(batch_size=0), ValueError, "batch_size must be at least 1, got 0"),
        (lambda: TransformConfig(image_size=0), ValueError, "image size must be between 1 and"),
        (lambda: TransformConfig(std=(0.2, 0.0, 0.2)), ValueError, "std finite and positive"),
        (lambda: TransformConfig(channels=3, mean=(0.1, 0.2)), ValueError, "need 1 or 3 values"),
        (lambda: SynthesisConfig(lr=0), ValueError, "synthesis lr must be positive, got 0"),
        (lambda: SynthesisConfig(jitter=-1), ValueError, "jitter must be non-negative, got -1"),
        (lambda: resolve_device("quantum"), ValueError, "unknown device 'quantum'"),
        (lambda: build_tiny_set(TensorSource(images), 0, torch.Generator(), None), ValueError, "at least 1 image"),
        (lambda: TensorSource(images.float()), ValueError, "expected uint8 images"),
    ]


@pytest.mark.parametrize("index", range(len(_api_cases())))
def test_api_bad_input(index):
    call, error, message = _api_cases()[index]
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        call()


def test_api_rejects_nan_teacher_and_too_many_blocks_before_any_long_step(monkeypatch):
    import practise.pipeline as pipeline
    from helpers import tiny_set
    from practise.pipeline import CompressConfig, compress

    def no_timing(*args, **kwargs):
        raise AssertionError("latency measurement started before the input was checked")

    monkeypatch.setattr(pipeline, "block_latency_reductions", no_timing)
    teacher = tiny_resnet()
    with pytest.raises(ValueError, match="cannot drop 50 blocks: the model has"):
        compress(teacher, tiny_set(12), CompressConfig(num_blocks=50, device="cpu"))
    with torch.no_grad():
        teacher.layer3[0].bn1.running_var[0] = float("inf")
    with pytest.raises(ValueError, match="'layer3.0.bn1.running_var' holds 1 NaN/Inf"):
        compress(teacher, tiny_set(12), CompressConfig(num_blocks=1, device="cpu"))


def test_a_model_returning_no_tensor_is_refused_at_inspection():
    from practise.pipeline import inspect_model

    class Words(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_resnet()

        def forward(self, x):
            self.net(x)
            return {"summary": "no logits here"}

    with pytest.raises(ValueError, match="with no tensor in it"):
        inspect_model(Words(), (1, 16, 16))


def test_pickle_is_refused_by_the_api(inputs):
    from practise.model_io import read_state_dict

    with pytest.raises(ValueError, match="not a weights-only checkpoint"):
        read_state_dict(inputs / "pickle.pth")
    assert not (inputs.parent / "MARKER").exists()


def test_data_free_checks_blocks_and_eval_data_before_synthesizing(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["compress", "--model", "resnet20", "--weights", str(inputs / "teacher.pth"), "--data-free", "4",
              "--out", str(out), "-q", "--device", "cpu", "--image-size", "16", "--mean", "0.5", "--std", "0.25"]
    assert main(common + ["--num-blocks", "40"]) == 2
    assert main(common + ["--num-blocks", "1", "--eval-data", "/no/eval/here"]) == 2
    assert main(common + ["--num-blocks", "1", "--include", "nothing.*"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "cannot drop 40 blocks" in err[0] and "/no/eval/here" in err[1] and "'nothing.*'" in err[2]
    assert not (out / "synthesized").exists()


def test_an_input_the_model_cannot_take_is_a_value_error_at_inspection():
    from helpers import Unit
    from practise.pipeline import inspect_model

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), Unit(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 16 * 16, 10))  # runs at 16 px only
    inspect_model(model, (1, 16, 16), feature_layer="1")
    with pytest.raises(ValueError, match=r"does not run on an input of shape \(1, 20, 20\).*`image_size`"):
        inspect_model(model, (1, 20, 20), feature_layer="1")


def test_binary_or_non_utf8_text_is_not_a_tiny_set(tmp_path):
    from practise.text.tinyset import read_examples

    (tmp_path / "bin.txt").write_bytes(b"a line\n\x00\x01\x02 more\n")
    with pytest.raises(ValueError, match="NUL bytes: a binary file"):
        read_examples(tmp_path / "bin.txt")
    (tmp_path / "latin.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text \\(line 2"):
        read_examples(tmp_path / "latin.txt")
    (tmp_path / "crlf.txt").write_bytes(b"one\r\ntwo\r\n\r\nthree")
    assert read_examples(tmp_path / "crlf.txt").identifiers == ["crlf.txt:1", "crlf.txt:2", "crlf.txt:4"]


def test_export_names_stay_inside_the_output_folder(tmp_path, capsys):
    from practise.cli import main

    code = main(["export", "--model", "resnet20", "--num-classes", "10", "--in-channels", "1", "--image-size", "16",
                 "--out", str(tmp_path / "deploy"), "--name", "../escaped"])
    assert code == 2 and "must be a plain file name" in capsys.readouterr().err
    assert not list(tmp_path.glob("escaped*"))


def test_seq_len_with_an_image_model_is_refused(capsys):
    from practise.cli import main

    assert main(["blocks", "--model", "resnet20", "--seq-len", "64"]) == 2
    assert "--seq-len does not apply to an image model" in capsys.readouterr().err


def test_an_image_folder_with_class_subfolders_and_loose_images_is_ambiguous(tmp_path):
    from helpers import write_png_folder
    from practise.data import ImageFolderSource

    write_png_folder(tmp_path / "data", classes=1, per_class=3)
    write_png_folder(tmp_path / "data", classes=0, per_class=2)
    with pytest.raises(ValueError, match="holds class subfolders \\(class0\\) and 2 images beside them"):
        ImageFolderSource(tmp_path / "data")
