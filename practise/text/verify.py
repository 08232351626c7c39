"""Is a reloaded model the pruned model it was saved from? Outputs on seeded tokens, and for
causal LMs greedy generation with and without the KV cache."""
from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from ..files import one_line
from .decode import is_causal_lm

GENERATION_OK = "ok"


class Mismatch(Exception):
    """A reloaded model that is not the model it was saved from (a reason, not a user error)."""


def seeded_tokens(model: nn.Module, batch: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    """Token ids away from the low ids where vocabularies keep special tokens."""
    vocab = model.config.vocab_size
    return torch.randint(min(1000, vocab // 2), vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def primary_output(output) -> torch.Tensor:
    return output.logits if getattr(output, "logits", None) is not None else output[0]


@torch.inference_mode()
def outputs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The model's main output (logits, else its first tensor) for ``ids``, one prefill without a cache."""
    takes_cache = "use_cache" in inspect.signature(model.forward).parameters
    extra = {"use_cache": False} if takes_cache else {}
    return primary_output(model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)).float()


def check_reload(pruned: nn.Module, reloaded: nn.Module, tolerance: float = 1e-4) -> tuple[float, str]:
    """(largest absolute output difference, generation outcome); Mismatch if the outputs differ."""
    ids = seeded_tokens(pruned)
    try:
        expected, got = outputs(pruned, ids), outputs(reloaded, ids)
    except Exception as exc:  # noqa: BLE001 - any failure of the reloaded model is a mismatch to report
        raise Mismatch(f"the reloaded model fails on tokens: {type(exc).__name__}: {one_line(exc)[:200]}") from None
    if got.shape != expected.shape:
        raise Mismatch(f"output shape {tuple(got.shape)} instead of {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    if not diff <= tolerance * (1 + float(expected.abs().max())):
        raise Mismatch(f"outputs differ by up to {diff:.3g}")
    return diff, generation_check(reloaded) if is_causal_lm(reloaded) else GENERATION_OK


@torch.inference_mode()
def generation_check(model: nn.Module, new_tokens: int = 6) -> str:
    """GENERATION_OK if greedy tokens are the same with the KV cache as without, else what went wrong."""
    prompt = seeded_tokens(model, batch=1, length=5, seed=1)
    try:
        runs = [model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, use_cache=cache, pad_token_id=0)
                for cache in (True, False)]
    except Exception as exc:  # noqa: BLE001
        return f"generation fails: {type(exc).__name__}: {one_line(exc)[:160]}"
    return GENERATION_OK if torch.equal(*runs) else "greedy tokens differ with the KV cache from without it"
