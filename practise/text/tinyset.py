"""Text tiny sets: examples from a .txt file (one per line) or a .jsonl file (an object
per line with a ``text`` field and an optional ``label``), sampled with a seed and
tokenised with the model's own tokenizer into (N, 2, tokens) ids + mask, padded to the
longest sampled example (at most ``max_length`` tokens)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.sampling import sample_tiny_set
from ..compress_report import TinySetInfo
from ..errors import UsageError

log = logging.getLogger(__name__)
TEXT_SUFFIXES = (".txt", ".jsonl")


@dataclass
class TextExamples:
    texts: list[str]
    labels: list[int] | None
    identifiers: list[str]            # file:line
    label_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)


def _text_lines(path: Path) -> list[str]:
    """The file's lines; a binary file or one that is not UTF-8 text is an error, not garbage examples."""
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise UsageError(f"{path} holds NUL bytes: a binary file, not text (one example per line, UTF-8)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UsageError(f"{path} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # lines as open() numbers them


def read_examples(path: str | Path) -> TextExamples:
    """Every example of a .txt or .jsonl file (the file is only read)."""
    path = Path(path)
    if path.suffix not in TEXT_SUFFIXES:
        raise UsageError(f"{path}: text examples come from a .txt (one per line) or a .jsonl file, "
                         f"not {path.suffix or 'a file without suffix'}")
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    texts, raw_labels, ids, skipped = [], [], [], []
    for number, line in enumerate(_text_lines(path), 1):
        if not line.strip():
            continue
        if path.suffix == ".txt":
            texts.append(line), ids.append(f"{path.name}:{number}")
            continue
        try:
            record = json.loads(line)
            text = record.get("text", record.get("sentence"))
        except (ValueError, AttributeError):
            skipped.append(f"{path.name}:{number}: not a JSON object")
            continue
        if not isinstance(text, str) or not text.strip():
            skipped.append(f"{path.name}:{number}: no \"text\" string")
            continue
        texts.append(text), ids.append(f"{path.name}:{number}"), raw_labels.append(record.get("label"))
    if skipped:
        log.warning("%s: skipped %d lines: %s", path, len(skipped), "; ".join(skipped[:3]))
    if not texts:
        raise UsageError(f"{path} holds no text examples")
    labels, names = _label_indices(raw_labels) if raw_labels and all(v is not None for v in raw_labels) else (None, None)
    return TextExamples(texts, labels, ids, names, skipped)


def _label_indices(raw: list) -> tuple[list[int], list[str]]:
    names = sorted({str(v) for v in raw}, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))
    index = {n: i for i, n in enumerate(names)}
    return [index[str(v)] for v in raw], names


@dataclass
class TextTinySet:
    """The text counterpart of data.TinySet: what scoring and recovery draw batches from."""

    tokens: torch.Tensor              # (N, 2, L) long: ids and attention mask
    labels: list[int] | None
    identifiers: list[str]
    texts: list[str]
    tokenizer_name: str
    max_length: int
    skipped: list[str] = field(default_factory=list)
    kind: str = "texts"

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def eval_tensor(self) -> torch.Tensor:
        return self.tokens

    def train_batch(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        return self.tokens[indices]  # text is not augmented

    def label_tensor(self) -> torch.Tensor:
        if self.labels is None:
            raise UsageError("this text tiny set has no labels; use a .jsonl file with a \"label\" per line "
                             "for label-based methods")
        return torch.tensor(self.labels, dtype=torch.long)

    @property
    def sample_shape(self) -> tuple[int, int]:
        return (2, self.tokens.shape[-1])

    def info(self) -> TinySetInfo:
        return TinySetInfo(len(self), self.labels is not None, self.skipped, [], self.identifiers, self.kind)

    def preprocessing_record(self) -> dict:
        return {"kind": "text", "tokenizer": self.tokenizer_name, "max_length": self.max_length,
                "sequence_length": self.tokens.shape[-1]}


def tokenize(tokenizer, texts: list[str], max_length: int, pad_to: int | None = None) -> torch.Tensor:
    """(N, 2, L) ids + mask; L = the longest text (or ``pad_to``), at most ``max_length``.

    A tokenizer without a pad token (decoder tokenizers often have none) is padded here
    with its end-of-text id (masked out anyway), leaving the caller's tokenizer unchanged."""
    if tokenizer.pad_token is not None:
        encoded = tokenizer(texts, truncation=True, max_length=pad_to or max_length,
                            padding="max_length" if pad_to else "longest", return_tensors="pt")
        return torch.stack([encoded["input_ids"], encoded["attention_mask"]], 1).long()
    ids = tokenizer(texts, truncation=True, max_length=pad_to or max_length)["input_ids"]
    length = pad_to or max(len(i) for i in ids)
    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    packed = torch.full((len(ids), 2, length), 0, dtype=torch.long)
    packed[:, 0] = pad
    for row, seq in enumerate(ids):
        packed[row, 0, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        packed[row, 1, :len(seq)] = 1
    return packed


def build_text_tiny_set(path: str | Path, tokenizer, n: int | None, generator: torch.Generator,
                        max_length: int = 128) -> TextTinySet:
    """Sample ``n`` examples (all if None) with the paper's rule and tokenise them."""
    if max_length < 2:
        raise UsageError(f"max_length must be at least 2 tokens, got {max_length}")
    examples = read_examples(path)
    n = len(examples.texts) if n is None else n
    if n < 1:
        raise UsageError(f"the tiny set needs at least 1 example, asked for {n}")
    if n > len(examples.texts):
        log.warning("%s holds %d examples; using all of them", path, len(examples.texts))
        n = len(examples.texts)
    chosen = sample_tiny_set(len(examples.texts), n, generator, examples.labels)
    texts = [examples.texts[i] for i in chosen]
    tokens = tokenize(tokenizer, texts, max_length)
    labels = [examples.labels[i] for i in chosen] if examples.labels is not None else None
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    return TextTinySet(tokens, labels, [examples.identifiers[i] for i in chosen], texts, str(name), max_length,
                       examples.skipped)
