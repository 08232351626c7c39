"""Experiment: linear patch fitted with plain vs relative (per-token RMS) weighting on dropped sets of the comparison."""
import json, sys, time, torch
sys.path.insert(0, "/work/main/benchmarks")
from llm_comparison import Bench, OUT
from practise.linear_patch import patch_runs_
from practise.surgery import drop_blocks
import llm_comparison
bench = Bench.__new__(Bench)
Bench.__init__(bench, OUT, 128, 128)
cells = json.loads((OUT / "cells.json").read_text())
sets = {"practise s0": ("ranking/64/0/practise-folded", 0), "cosine s1": ("ranking/64/1/cosine", 1),
        "angular s0": ("ranking/64/0/angular/12", 0), "cosine s0": ("ranking/64/0/cosine", 0)}
for name, (key, seed) in sets.items():
    dropped = cells[key]["order"][:12]
    tiny = bench.tiny(64, seed)
    for relative in (False, True):
        student = drop_blocks(bench.model, dropped)
        t = time.perf_counter()
        rec = patch_runs_(student, bench.model, bench.info.trace.candidates(), dropped, tiny.tokens, relative=relative)
        ev = bench.evaluate(student)
        print(name, "relative" if relative else "plain", round(ev["docstrings"]["perplexity"], 1), round(ev["debian"]["perplexity"], 1),
              [r.ridge for r in rec], f"{time.perf_counter()-t:.0f}s", flush=True)
