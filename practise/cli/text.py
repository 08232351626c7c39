"""The command line for token models (``--model hf:...``): flags onto library calls."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..artifacts import check_output_folder, write_compressed_outputs
from ..errors import UsageError
from ..pipeline import check_against_model, compress
from ..seeding import seed_everything
from ..text import build_text_tiny_set, load_hf
from ..text.model import HF_PREFIX
from ..text.tinyset import TEXT_SUFFIXES
from .summary import print_summary


def is_hf_spec(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(HF_PREFIX)


def token_shape(a, tiny_length: int | None = None) -> tuple[int, int]:
    """(2, tokens): ids and mask, at --seq-len, else the tiny set's length, else --max-length."""
    return (2, a.seq_len or tiny_length or getattr(a, "max_length", 128))


def check_text_data(path: str, flag: str = "--data") -> None:
    if Path(path).suffix not in TEXT_SUFFIXES:
        raise UsageError(f"{flag} {path}: a token model takes text from a .txt (one example per line) or "
                         ".jsonl file (\"text\", optional \"label\" per line)")


def text_tiny_set(a, tokenizer):
    check_text_data(a.data)
    return build_text_tiny_set(a.data, tokenizer, a.num_images, seed_everything(a.seed), a.max_length)


def held_out_texts(a, tokenizer):
    """Every line of --eval-data (or --eval-limit of them, drawn with the seed), tokenised like the tiny set."""
    return build_text_tiny_set(a.eval_data, tokenizer, a.eval_limit, seed_everything(a.seed), a.max_length)


def run_text_compress(a, config, progress) -> None:
    """`practise compress` for a token model."""
    if a.data_free is not None or a.data is None:
        raise UsageError("token models need --data with a .txt or .jsonl file (--data-free synthesizes images only)")
    check_text_data(a.data)
    if a.eval_data:
        check_text_data(a.eval_data, "--eval-data")
    out = check_output_folder(a.out, a.overwrite, token_model=True)
    bundle = load_hf(a.model)
    tiny = text_tiny_set(a, bundle.tokenizer)
    held_out = held_out_texts(a, bundle.tokenizer) if a.eval_data else None
    shape = token_shape(a, tiny.sample_shape[-1])
    check_against_model(bundle.model, shape, config)
    result = compress(bundle.model, tiny, config, sample_shape=shape, eval_source=held_out,
                      workdir=a.workdir or out / "work", progress=progress)
    if result is None:  # a torchrun rank other than 0: its share of the scoring is done
        return
    written = write_compressed_outputs(result, bundle.model, out_dir=out, overwrite=a.overwrite,
                                       tokenizer=bundle.tokenizer, command=command_line(a))
    print_summary(written.report, written.paths.values())


def command_line(a) -> str:
    """The command as the user typed it (for the model card)."""
    return shlex.join(["practise", *a.argv]) if getattr(a, "argv", None) is not None else ""
