"""Quality of a compressed token model the way its field reports it, on held-out text.

Causal LMs: perplexity (token-weighted over every predicted real token of the held-out lines,
teacher and compressed) and how often the compressed model's greedy next token is the
teacher's. Encoders: the cosine similarity of each line's mean-pooled embedding (over real
tokens of the last hidden state) to the teacher's.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..inputs import batches_by_length, used_length
from .decode import is_causal_lm
from .model import unwrap


@torch.inference_mode()
def _batches(model: nn.Module, tokens: torch.Tensor, batch_size: int, device: torch.device):
    """(ids, mask, output) per batch of the packed (N, 2, L) tokens: shortest lines first, each
    batch cut after its last real token (padding is masked out and costs compute)."""
    model.eval()
    for rows in batches_by_length(tokens[:, 1], tokens.shape[0], batch_size):
        chunk = tokens[rows]
        chunk = chunk[..., :used_length(chunk[:, 1])].to(device)
        ids, mask = chunk[:, 0], chunk[:, 1]
        yield ids, mask, model(input_ids=ids, attention_mask=mask)


def evaluate_text(teacher: nn.Module, student: nn.Module, tokens: torch.Tensor, batch_size: int = 8,
                  device: torch.device | str = "cpu") -> dict:
    """Held-out quality of ``student`` against ``teacher`` (HF models, or SequenceModels of them)
    on ``tokens`` (a text set's packed ids and mask)."""
    teacher, student, device = unwrap(teacher), unwrap(student), torch.device(device)
    if is_causal_lm(teacher):
        return _causal(teacher, student, tokens, batch_size, device)
    return _encoder(teacher, student, tokens, batch_size, device)


def _causal(teacher, student, tokens, batch_size, device) -> dict:
    nll = {"teacher": 0.0, "compressed": 0.0}
    count = agree = 0
    for (ids, mask, t_out), (_, _, s_out) in zip(_batches(teacher, tokens, batch_size, device),
                                                 _batches(student, tokens, batch_size, device)):
        target, real = ids[:, 1:], (mask[:, 1:] * mask[:, :-1]).bool()  # predicted positions of real tokens
        for name, out in (("teacher", t_out), ("compressed", s_out)):
            logits = out.logits[:, :-1].float()
            losses = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            nll[name] += float(losses[real].sum())
        agree += int((t_out.logits[:, :-1].argmax(-1) == s_out.logits[:, :-1].argmax(-1))[real].sum())
        count += int(real.sum())
    if count == 0:
        return {}
    teacher_ppl, student_ppl = (math.exp(nll[k] / count) for k in ("teacher", "compressed"))
    return {"teacher": {"perplexity": teacher_ppl, "tokens": count, "sequences": tokens.shape[0]},
            "compressed": {"perplexity": student_ppl, "tokens": count, "sequences": tokens.shape[0],
                           "next_token_agreement": agree / count}}


def _mean_pooled(out, mask: torch.Tensor) -> torch.Tensor:
    hidden = (out.last_hidden_state if getattr(out, "last_hidden_state", None) is not None else out[0]).float()
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _encoder(teacher, student, tokens, batch_size, device) -> dict:
    cosines = []
    for (ids, mask, t_out), (_, _, s_out) in zip(_batches(teacher, tokens, batch_size, device),
                                                 _batches(student, tokens, batch_size, device)):
        cosines.append(F.cosine_similarity(_mean_pooled(t_out, mask), _mean_pooled(s_out, mask), dim=-1))
    values = torch.cat(cosines)
    return {"teacher": {"sequences": int(values.numel())},
            "compressed": {"sequences": int(values.numel()), "embedding_cosine_to_teacher": float(values.mean()),
                           "embedding_cosine_min": float(values.min())}}
