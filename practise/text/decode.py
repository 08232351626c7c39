"""Per-token decode latency of causal LMs: what a chat or completion user waits for per
generated token, beside the prefill latency practise selects by.

Greedy generation with the KV cache, a fixed prompt and exactly ``new_tokens`` tokens
(no early stop). The per-token time is the difference between generating ``new_tokens``
and generating one, divided by ``new_tokens - 1``, so the prefill cancels; models are
interleaved repeat by repeat and medians reported.
"""
from __future__ import annotations

import copy
import inspect
import statistics
import time

import torch
import torch.nn as nn

from ..errors import UsageError
from .layers import remove_dropped_layers_
from .model import SequenceModel, unwrap


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


class DecodeStep(SequenceModel):
    """The same HF causal LM, timed as one decode step: each call feeds the last token of its
    input to the model with a KV cache holding the ``context - 1`` tokens before it, then
    crops the cache back, so every call costs what generating one token costs at that
    context. Its blocks are the wrapped model's under the same names, so the latency
    machinery drops and times them as in prefill.

    The cache is made on the first call for each (batch, dtype) by a prefill of the context,
    which must run with every layer present (the timing loops run the full model first);
    a cache missing a layer's entries is refused rather than timed."""

    def forward(self, tokens: torch.Tensor):
        if tokens.dim() != 3 or tokens.shape[1] != 2 or tokens.shape[-1] < 2:
            raise RuntimeError(f"a DecodeStep takes (batch, 2, tokens >= 2) ids and mask, got {tuple(tokens.shape)}")
        ids = tokens[:, 0]
        cache = self._cache(ids)
        try:
            return self.model(input_ids=ids[:, -1:], attention_mask=torch.ones_like(ids), use_cache=True,
                              **{cache_keyword(self.model): cache})
        finally:
            crop_to(cache, ids.shape[1] - 1)

    def _cache(self, ids: torch.Tensor):
        dtype = next(self.model.parameters()).dtype
        key = (ids.shape[0], ids.shape[1], dtype, ids.device)
        caches = self.__dict__.setdefault("_caches", {})  # plain state: not in state_dict, not moved by .to()
        if key not in caches:
            context = ids[:, :-1]
            with torch.inference_mode():
                out = self.model(input_ids=context, attention_mask=torch.ones_like(context), use_cache=True)
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else getattr(out, "past_key_values", None)
            if cache is None or not getattr(cache, "is_croppable", True):
                raise UsageError(f"{type(self.model).__name__} keeps no croppable KV cache; time prefill latency "
                                 "instead (`latency.metric` \"prefill\")")
            lengths = {cache.get_seq_length(i) for i in range(len(cache.layers))} if hasattr(cache, "layers") \
                else {cache.get_seq_length()}
            if lengths != {context.shape[1]}:
                raise RuntimeError("the decode-timing cache was made while layers were dropped")
            caches[key] = cache
        return caches[key]


def cache_keyword(model: nn.Module) -> str:
    """The forward argument that takes a KV cache: ``cache`` in newer transformers, else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def crop_to(cache, length: int) -> None:
    """Every layer of ``cache`` back to ``length`` tokens; layers a dropped block left as they
    were are not touched (a relative crop of the whole cache would shorten them)."""
    layers = getattr(cache, "layers", None)
    if layers is None:  # older transformers: one absolute crop
        cache.crop(length)
        return
    for layer in layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def timing_model(model: nn.Module, metric: str) -> nn.Module:
    """What latency is measured on for ``metric``: the model itself for "prefill", a
    :class:`DecodeStep` around a causal LM for "decode" (a one-line error otherwise)."""
    if metric == "prefill":
        return model
    inner = unwrap(model)
    if not is_causal_lm(inner):
        raise UsageError(f"decode latency needs a causal language model (one that generates text); "
                         f"{type(inner).__name__} is not one: use `latency.metric` \"prefill\"")
    step = DecodeStep(inner, use_cache=True)
    step.practise_arch = getattr(model, "practise_arch", None)
    return step
