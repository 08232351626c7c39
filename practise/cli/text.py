"""The command line for token models (``--model hf:...``): the tiny set from a text file,
the sequence shape, and the outputs (a save_pretrained folder beside the report)."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch.nn as nn

from ..artifacts import check_output_folder
from ..report import write_report_files
from ..seeding import seed_everything
from ..text import SequenceModel, build_text_tiny_set, load_hf
from ..text.model import HF_PREFIX
from ..text.decode import decode_ms_per_token, is_causal_lm
from ..text.saving import remove_dropped_layers_, save_pretrained
from ..text.tinyset import TEXT_SUFFIXES
from ..errors import UsageError

log = logging.getLogger("practise")
HF_FOLDER = "model"  # the save_pretrained folder inside --out


def is_hf_spec(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(HF_PREFIX)


def token_shape(a, tiny_length: int | None = None) -> tuple[int, int]:
    """(2, tokens): ids and mask, at --seq-len, else the tiny set's length, else --max-length."""
    return (2, a.seq_len or tiny_length or getattr(a, "max_length", 128))


def check_text_data(path: str) -> None:
    if Path(path).suffix not in TEXT_SUFFIXES:
        raise UsageError(f"--data {path}: a token model takes its tiny set from a .txt (one example per line) or "
                         ".jsonl file (\"text\", optional \"label\" per line)")


def text_tiny_set(a, tokenizer):
    check_text_data(a.data)
    return build_text_tiny_set(a.data, tokenizer, a.num_images, seed_everything(a.seed), a.max_length)


def run_text_compress(a, config, progress) -> None:
    """`practise compress` for a token model."""
    from ..pipeline import check_against_model, compress
    from .common import print_summary

    if a.data_free is not None or a.data is None:
        raise UsageError("token models need --data with a .txt or .jsonl file (--data-free synthesizes images only)")
    if a.eval_data:
        raise UsageError("--eval-data is for image classifiers; for token models compare the saved model on your "
                         "task (benchmarks/minilm.py shows an embedding probe)")
    check_text_data(a.data)
    out = check_output_folder(a.out, a.overwrite)
    if (out / HF_FOLDER).exists() and not a.overwrite:
        raise FileExistsError(f"{out / HF_FOLDER} exists; pass --overwrite or choose another --out")
    bundle = load_hf(a.model)
    tiny = text_tiny_set(a, bundle.tokenizer)
    shape = token_shape(a, tiny.sample_shape[-1])
    check_against_model(bundle.model, shape, config)
    result = compress(bundle.model, tiny, shape, config, workdir=a.workdir or out / "work", progress=progress)
    if result is None:  # a torchrun rank other than 0: its share of the scoring is done
        return
    if is_causal_lm(unwrap(bundle.model)):
        result.report.decode = decode_record(unwrap(bundle.model), unwrap(result.model), shape[-1])
    paths = write_report_files(result.report, out)
    folder = save_pretrained(unwrap(result.model), bundle.tokenizer, out / HF_FOLDER,
                             extra={"dropped_blocks": result.selection.blocks, "source": str(bundle.path)},
                             overwrite=a.overwrite)
    print_summary(result.report, out, [folder] + list(paths.values()))


def decode_record(teacher: nn.Module, student: nn.Module, prompt_length: int, new_tokens: int = 32) -> dict:
    """Per-token decode latency of both, the student with its dropped layers removed (as saved)."""
    student = copy.deepcopy(student)
    remove_dropped_layers_(student)
    times = decode_ms_per_token({"teacher": teacher, "compressed": student}, prompt_length, new_tokens)
    return {"prompt_length": prompt_length, "new_tokens": new_tokens, "batch": 1, "teacher_ms": times["teacher"],
            "compressed_ms": times["compressed"]}


def unwrap(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, SequenceModel) else model
