"""Why a criterion's dropped set loses on SmolLM2: the search, or what it measures?

For every dropped set of ``llm_comparison``'s cells (one per criterion, seed and target), this
rebuilds the student with the linear patch, as the comparison did, and measures on the seed's
own calibration sequences (the tiny set every criterion ranked from):

- the feature error PRACTISE minimises: the mean squared error of the final hidden state
  (the feature layer, after the final norm) against the teacher's, over real tokens;
- calibration perplexity (what SLEB minimises);

beside the held-out perplexity the comparison measured. If another criterion's set has a lower
feature error than PRACTISE's, PRACTISE's search (one-shot or greedy) missed it; if PRACTISE's
set has the lowest feature error but not the lowest held-out perplexity, the measured feature
is what misleads. Writes ``results/llm_comparison/diagnosis.md`` and ``diagnosis.json``
(resumable: finished sets are skipped).

    python benchmarks/llm_set_diagnosis.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from common import provenance
from llm_comparison import OUT, Bench, _causal_outputs

CRITERIA = ["practise-iterative", "practise-folded", "cosine", "sleb", "angular"]


@torch.inference_mode()
def feature_mse(model, teacher_features: torch.Tensor, tokens: torch.Tensor, feature_layer: str) -> float:
    """Masked MSE of ``model``'s features at ``feature_layer`` against the teacher's."""
    from practise.features import feature_error, forward_features

    total, count = 0.0, 0
    for start in range(0, tokens.shape[0], 32):
        chunk = tokens[start:start + 32]
        error, values = feature_error(forward_features(model, chunk, feature_layer),
                                      teacher_features[start:start + 32], chunk[:, 1])
        total, count = total + float(error), count + values
    return total / count


def perplexity(model, tokens: torch.Tensor) -> float:
    out = _causal_outputs(model, tokens)
    real = int((tokens[:, 1, 1:] * tokens[:, 1, :-1]).sum())
    return math.exp(out["nll"] / real)


def diagnose(bench: Bench, seeds: list[int], results: dict, save) -> None:
    """Measure every set of ``seeds`` not in ``results`` yet; ``save()`` after each."""
    from practise.features import forward_features
    from practise.linear_patch import patch_runs_
    from practise.surgery import drop_blocks

    layer = bench.info.feature_layer
    for seed in seeds:
        tiny = bench.tiny(64, seed)
        with torch.inference_mode():
            teacher = torch.cat([forward_features(bench.model, tiny.tokens[i:i + 32], layer)
                                 for i in range(0, tiny.tokens.shape[0], 32)])
        for target in bench.cells["latency"]["targets"]:
            for criterion in CRITERIA:
                key, cell_key = f"{seed}/{target}/{criterion}", f"64/{seed}/{criterion}/{target}/linear-patch"
                if key in results or cell_key not in bench.cells:
                    continue
                cell = bench.cells[cell_key]
                began = time.perf_counter()
                student = drop_blocks(bench.model, cell["dropped"])
                patch_runs_(student, bench.model, bench.info.trace.candidates(), cell["dropped"], tiny.tokens,
                            fit_scale=bench.fit_scale)
                results[key] = {"dropped": sorted(int(b.rsplit(".", 1)[-1]) for b in cell["dropped"]),
                                "feature_mse": feature_mse(student, teacher, tiny.tokens, layer),
                                "calibration_perplexity": perplexity(student, tiny.tokens),
                                "docstrings": cell["docstrings"]["perplexity"],
                                "debian": cell["debian"]["perplexity"]}
                print(key, {k: v for k, v in results[key].items() if k != "dropped"},
                      f"{time.perf_counter() - began:.0f} s", flush=True)
                save()


def _rank(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = _rank(a), _rank(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))


def report(results: dict, out: Path, prov: dict) -> None:
    lines = ["# Dropped sets on SmolLM2: feature error and calibration perplexity against held-out perplexity", "",
             f"- command: `{prov['command']}`; commit `{prov['commit']}`; machine {prov['machine']['cpu']}, "
             f"{prov['machine']['cores']} cores",
             "- every set repaired with the linear patch (token-scaled fit) on the seed's 64 calibration "
             "docstrings; feature MSE and calibration perplexity on those same 64; held-out perplexity "
             "from `cells.json`", "",
             "| seed | target | criterion | dropped layers | feature MSE (calibration) | calibration ppl "
             "| docstrings ppl | Debian ppl |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for key, r in sorted(results.items()):
        seed, target, criterion = key.split("/")
        groups.setdefault((seed, target), []).append((criterion, r))
        lines.append(f"| {seed} | {100 * float(target):.0f}% | {criterion} | {r['dropped']} | {r['feature_mse']:.4f} "
                     f"| {r['calibration_perplexity']:.1f} | {r['docstrings']:.1f} | {r['debian']:,.0f} |")
    lines += ["", "## Which measure orders the sets as held-out perplexity does", "",
              "Spearman correlation across the criteria's sets of one seed and target (1: the same order).", "",
              "| seed | target | sets | lowest feature MSE | lowest calibration ppl | lowest docstrings ppl "
              "| rho(feature MSE, docstrings) | rho(calibration ppl, docstrings) | rho(feature MSE, Debian) "
              "| rho(calibration ppl, Debian) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rhos: dict[str, list[float]] = {}
    for (seed, target), rows in sorted(groups.items()):
        if len(rows) < 3:
            continue
        column = {m: [r[m] for _, r in rows] for m in ("feature_mse", "calibration_perplexity", "docstrings", "debian")}
        best = {m: min(rows, key=lambda cr: cr[1][m])[0] for m in column}
        pairs = [("feature_mse", "docstrings"), ("calibration_perplexity", "docstrings"),
                 ("feature_mse", "debian"), ("calibration_perplexity", "debian")]
        values = [spearman(column[a], column[b]) for a, b in pairs]
        for (a, b), v in zip(pairs, values):
            rhos.setdefault(f"{a}/{b}", []).append(v)
        lines.append(f"| {seed} | {100 * float(target):.0f}% | {len(rows)} | {best['feature_mse']} | "
                     f"{best['calibration_perplexity']} | {best['docstrings']} | "
                     + " | ".join(f"{v:+.2f}" for v in values) + " |")
    if rhos:
        lines += ["", "Mean rho over seeds and targets: " + "; ".join(
            f"{k.replace('/', ' vs ')} {statistics.mean(v):+.2f}" for k, v in rhos.items()) + "."]
    (out / "diagnosis.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--report", action="store_true", help="only rewrite diagnosis.md from diagnosis.json")
    args = p.parse_args()
    out = Path(args.out)
    path = out / "diagnosis.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    results, prov = stored.get("sets", {}), stored.get("provenance") or provenance()

    def save() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"provenance": prov, "sets": results}, indent=1))
        tmp.replace(path)

    if not args.report:
        diagnose(Bench(out, 128, 128), args.seeds, results, save)
    report(results, out, prov)


if __name__ == "__main__":
    main()
