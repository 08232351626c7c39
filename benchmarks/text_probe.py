"""How good a sentence encoder's embeddings are, and how fast it encodes, on CPU.

Embeddings as sentence-transformers makes them for all-MiniLM-L6-v2 (its modules.json:
the transformer, mean pooling over real tokens, L2 normalisation), computed here from the
HF model's last hidden state so a compressed model is evaluated the same way.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression


@torch.no_grad()
def encode(model, tokenizer, texts: list[str], batch: int = 128, max_length: int = 128) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1))
    return torch.cat(out)


def probe_accuracy(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str]) -> float:
    """A linear classifier (logistic regression) on frozen embeddings: test accuracy."""
    classifier = LogisticRegression(max_iter=3000, C=10.0)
    classifier.fit(train_x.numpy(), train_y)
    return float((classifier.predict(test_x.numpy()) == np.array(test_y)).mean())


def neighbour_agreement(teacher_q, teacher_corpus, student_q, student_corpus, k: int = 10) -> dict:
    """Is each query's nearest corpus item the same under both encoders; overlap of the top k."""
    t = (teacher_q @ teacher_corpus.T).topk(k, dim=1).indices
    s = (student_q @ student_corpus.T).topk(k, dim=1).indices
    top1 = float((t[:, 0] == s[:, 0]).float().mean())
    overlap = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(t, s)]))
    return {"top1_same": top1, f"top{k}_overlap": overlap}


@torch.no_grad()
def throughput(models: dict, tokenizer, texts: list[str], batch: int = 32, repeats: int = 7,
               max_length: int = 128) -> dict[str, float]:
    """Sentences per second encoding ``texts`` in batches (padded to each batch's longest),
    models interleaved repeat by repeat; the median over repeats."""
    batches = [tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt") for i in range(0, len(texts), batch)]
    times = {name: [] for name in models}
    for name, model in models.items():  # warm-up
        model.eval()
        model(input_ids=batches[0]["input_ids"], attention_mask=batches[0]["attention_mask"])
    for r in range(repeats):
        order = list(models)[r % len(models):] + list(models)[:r % len(models)]
        for name in order:
            began = time.perf_counter()
            for enc in batches:
                models[name](input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            times[name].append(time.perf_counter() - began)
    return {name: len(texts) / statistics.median(t) for name, t in times.items()}
