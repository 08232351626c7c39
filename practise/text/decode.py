"""Per-token decode latency of causal LMs: what a chat or completion user waits for per
generated token, beside the prefill latency practise selects by.

Greedy generation with the KV cache, a fixed prompt and exactly ``new_tokens`` tokens
(no early stop). The per-token time is the difference between generating ``new_tokens``
and generating one, divided by ``new_tokens - 1``, so the prefill cancels; models are
interleaved repeat by repeat and medians reported.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn as nn

from ..errors import UsageError
from .layers import remove_dropped_layers_


@torch.inference_mode()
def _generate_seconds(model: nn.Module, prompt: torch.Tensor, tokens: int) -> float:
    began = time.perf_counter()
    model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=tokens, min_new_tokens=tokens,
                   do_sample=False, use_cache=True, pad_token_id=0)
    return time.perf_counter() - began


def decode_ms_per_token(models: dict[str, nn.Module], prompt_length: int = 32, new_tokens: int = 32,
                        batch: int = 1, repeats: int = 5, vocab_size: int | None = None) -> dict[str, float]:
    """Median milliseconds per generated token for each model (HF models with ``generate``)."""
    if new_tokens < 2:
        raise UsageError(f"new_tokens must be at least 2 (the prefill is subtracted), got {new_tokens}")
    first = next(iter(models.values()))
    vocab = vocab_size or first.config.vocab_size
    prompt = torch.randint(min(1000, vocab // 2), vocab, (batch, prompt_length),
                           generator=torch.Generator().manual_seed(0))
    samples: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
        _generate_seconds(model, prompt, 2)  # warm-up
    names = list(models)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            long = _generate_seconds(models[name], prompt, new_tokens)
            short = _generate_seconds(models[name], prompt, 1)
            samples[name].append(max(long - short, 0.0) / (new_tokens - 1))
    return {name: 1000 * statistics.median(values) for name, values in samples.items()}


def is_causal_lm(model: nn.Module) -> bool:
    """An HF model that generates text (a causal-LM head with ``generate``)."""
    return hasattr(model, "generate") and type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


def decode_record(teacher: nn.Module, student: nn.Module, prompt_length: int, new_tokens: int = 32) -> dict:
    """Per-token decode latency of both HF causal LMs (batch 1, a ``prompt_length`` prompt),
    the student with its dropped layers removed, as it is saved and deployed."""
    student = copy.deepcopy(student)
    remove_dropped_layers_(student)
    times = decode_ms_per_token({"teacher": teacher, "compressed": student}, prompt_length, new_tokens)
    return {"prompt_length": prompt_length, "new_tokens": new_tokens, "batch": 1, "teacher_ms": times["teacher"],
            "compressed_ms": times["compressed"]}
