"""The paper's theory on real networks (issue: finetune convexity and the variance of mimicking).

1. Variance: the same blocks (PRACTISE's choice at 22% measured latency reduction, from
   benchmarks/comparison.py's plan; scheme "blocks22") are dropped from the resnet56 teacher and recovered by
   feature mimicking and by cross-entropy finetuning from --num-sets different tiny sets
   of 50 and of 500 images, with the same optimiser, learning rate and iterations. Per
   method: variance across runs of the recovered parameters (per tensor, overall), of
   the test-set logits, and of test accuracy.
2. Convexity: loss along straight lines in weight space, from the pruned start (teacher
   weights) to a recovered solution, and between two solutions from different tiny sets,
   for block dropping ("blocks22") and channel pruning at the same measured latency
   ("channels22", Torch-Pruning L1, every group but the feature map's). BatchNorm statistics are re-estimated on the tiny set at every
   point (theory_analysis.py). Reported: the curve's largest rise above its chord
   (convexity gap) and, between solutions, the barrier height.

Stages (run may go to a GPU machine; results are small JSON files under --workdir, and
recovered weights stay in --statedir on the machine that ran them):
  python benchmarks/theory.py run --device cuda --jobs 12      # recoveries, variance, paths
  python benchmarks/theory.py report                          # tables and plots
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from common import ROOT, fmnist_teacher, provenance
from comparison import WORKDIR as COMPARISON, identifiers_digest, read_json, run_parallel, tiny_set_for, write_json
from theory_analysis import (barrier_height, convexity_gap, float_state, output_variance, parameter_variance,
                               path_losses)
from practise.baselines.channel_pruning import prune_channels
from practise.data import load_fashion_mnist
from practise.data import fashion_mnist_transforms
from practise.evaluation import iterate_eval_batches
from practise.features import forward_features
from practise.modes import hooks_removed
from practise.recovery import RecoveryConfig, recover_
from practise.surgery import drop_blocks

log = logging.getLogger("theory")
SHAPE = (1, 28, 28)
FEATURES = "layer3"
WORKDIR = ROOT / "benchmarks" / "results" / "theory"
VARIANCE_SCHEME = "blocks22"                    # PRACTISE's blocks at 22% measured latency reduction
PATH_ONLY_SCHEMES = ("channels22",)            # L1 channel pruning at the same measured latency


def pruned_start(teacher, scheme: str, plan: dict):
    """The network recovery starts from: teacher weights with blocks dropped or channels pruned."""
    spec = plan["schemes"][scheme]
    if spec["kind"] == "blocks":
        return drop_blocks(teacher, spec["blocks"])
    return prune_channels(teacher, torch.zeros(1, *SHAPE, device=next(teacher.parameters()).device),
                          spec["ratio"], importance="l1", scope="features", feature_layer=FEATURES)


def run_id(scheme: str, method: str, n: int, seed: int) -> str:
    return f"{scheme}-{method}-N{n}-s{seed}"


def features_and_logits(model, images, batch: int = 1000):
    """Pre-pooling features (FEATURES) and logits in one pass per batch."""
    features, logits = [], []
    with hooks_removed([model.get_submodule(FEATURES).register_forward_hook(
            lambda mod, args, out: features.append(out))]):
        for i in range(0, images.shape[0], batch):
            logits.append(model(images[i:i + batch]))
    return torch.cat(features), torch.cat(logits)


def test_tensors(device: str, data_root, limit: int | None = None):
    images, labels = [], []
    for x, y in iterate_eval_batches(load_fashion_mnist("test", data_root), fashion_mnist_transforms(), 1000, limit):
        images.append(x)
        labels.append(y)
    return torch.cat(images).to(device), torch.cat(labels).to(device)


@torch.no_grad()
def accuracy(model, images, labels, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, images.shape[0], batch))
    return correct / images.shape[0]


def recover_one(workdir: str, statedir: str, scheme: str, method: str, n: int, seed: int, plan: dict,
                device: str, data_root) -> None:
    began = time.perf_counter()
    teacher = fmnist_teacher("resnet56").to(device).eval()
    tiny = tiny_set_for(n, seed, data_root)
    student = pruned_start(teacher, scheme, plan)
    config = RecoveryConfig(method=method, iterations=plan["iterations"], lr=plan["lr"], seed=seed)
    losses = recover_(student, teacher, tiny, FEATURES, config, device)
    images, labels = test_tensors(device, data_root)
    name = run_id(scheme, method, n, seed)
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
              str(Path(statedir) / f"{name}.safetensors"))
    write_json(Path(workdir) / "runs" / f"{name}.json",
               {"run": name, "top1": accuracy(student, images, labels), "loss_first": losses[0],
                "loss_last": losses[-1], "iterations": config.iterations, "lr": config.resolved_lr,
                "tiny_set_digest": identifiers_digest(tiny), "device": device, "seconds": time.perf_counter() - began})
    log.info("%s done (%.0f s)", name, time.perf_counter() - began)


def variance_one(workdir: str, statedir: str, method: str, n: int, seeds: list[int], plan: dict, device: str,
                 data_root) -> None:
    teacher = fmnist_teacher("resnet56").to(device).eval()
    names = [run_id(VARIANCE_SCHEME, method, n, s) for s in seeds]
    states = [load_file(str(Path(statedir) / f"{name}.safetensors"), device=device) for name in names]
    models = []
    for state in states:
        model = pruned_start(teacher, VARIANCE_SCHEME, plan)
        model.load_state_dict(state)
        models.append(model.eval())
    learnable = [float_state(m) for m in models]
    per_tensor, overall = parameter_variance(learnable)
    images, labels = test_tensors(device, data_root)
    top1 = [accuracy(m, images, labels) for m in models]
    write_json(Path(workdir) / "variance" / f"{method}-N{n}.json",
               {"method": method, "n": n, "runs": names, "parameter_variance": overall,
                "parameter_variance_per_tensor": per_tensor, "output_variance": output_variance(models, images),
                "top1": top1, "top1_variance": float(torch.tensor(top1).var()) if len(top1) > 1 else 0.0})


def path_one(workdir: str, statedir: str, scheme: str, method: str, n: int, seeds: list[int], kind: str, plan: dict,
             points: int, device: str, data_root, test_limit: int | None = None) -> None:
    """kind "start": pruned start -> solution of seeds[0]; "between": solution seeds[0] -> seeds[1]."""
    teacher = fmnist_teacher("resnet56").to(device).eval()
    model = pruned_start(teacher, scheme, plan).to(device)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    first = load_file(str(Path(statedir) / f"{run_id(scheme, method, n, seeds[0])}.safetensors"), device=device)
    if kind == "start":
        a, b = start, first
    else:
        a, b = first, load_file(str(Path(statedir) / f"{run_id(scheme, method, n, seeds[1])}.safetensors"), device=device)
    tiny = tiny_set_for(n, seeds[0], data_root)
    tiny_x = tiny.eval_tensor().to(device)
    tiny_y = tiny.label_tensor().to(device)
    test_x, test_y = test_tensors(device, data_root, test_limit)
    with torch.no_grad():
        tiny_target = forward_features(teacher, tiny_x, FEATURES)
        test_target = torch.cat([forward_features(teacher, test_x[i:i + 1000], FEATURES)
                                 for i in range(0, test_x.shape[0], 1000)])

    @torch.no_grad()
    def metrics(m) -> dict[str, float]:
        """Tiny-set objectives and test losses of one network, each set passed through once."""
        tiny_features, tiny_logits = features_and_logits(m, tiny_x)
        test_features, test_logits = features_and_logits(m, test_x)
        return {"train_mimic": float(F.mse_loss(tiny_features, tiny_target)),
                "train_ce": float(F.cross_entropy(tiny_logits, tiny_y)),
                "test_mimic": float(F.mse_loss(test_features, test_target)),
                "test_ce": float(F.cross_entropy(test_logits, test_y)),
                "test_error": float((test_logits.argmax(1) != test_y).float().mean())}

    curves = path_losses(model, a, b, metrics, points=points, bn_images=tiny_x)
    name = f"{scheme}-{method}-N{n}-{kind}"
    write_json(Path(workdir) / "paths" / f"{name}.json",
               {"path": name, "scheme": scheme, "method": method, "n": n, "kind": kind, "seeds": seeds[:2],
                "points": points, "test_images": int(test_x.shape[0]),
                "bn": "re-estimated on the tiny set at every point", "curves": curves,
                "convexity_gap": {k: convexity_gap(v) for k, v in curves.items()},
                "barrier": {k: barrier_height(v) for k, v in curves.items()}})


def run(args) -> None:
    workdir, statedir = Path(args.workdir), Path(args.statedir)
    statedir.mkdir(parents=True, exist_ok=True)
    plan = experiment_plan(args)
    write_json(workdir / "plan.json", plan)
    seeds = plan["seeds"]
    common = (plan, args.device, args.data_root)
    tasks = [(variance_one, (str(workdir), str(statedir), m, n, seeds, *common)) for m in ("mimic", "ce")
             for n in args.sizes]
    tasks += [(path_one, (str(workdir), str(statedir), sc, m, n, seeds, kind, plan, args.points, args.device,
                          args.data_root, args.path_test_images))
              for sc in (VARIANCE_SCHEME, *PATH_ONLY_SCHEMES) for m in ("mimic", "ce") for n in args.sizes
              for kind in ("start", "between")]
    tasks = [t for t in tasks if not analysis_output(workdir, t).is_file()]  # finished analyses are kept
    # recover only what an unfinished analysis needs and the state folder lacks (it may be
    # gone, e.g. a /tmp of an earlier machine, while the analyses made from it are committed)
    needed = sorted({r for t in tasks for r in runs_needed(t, seeds)})
    todo = [r for r in needed if not (statedir / f"{run_id(*r)}.safetensors").is_file()]
    log.info("%d analyses to do, %d recoveries to run for them", len(tasks), len(todo))
    run_parallel(recover_one, [(str(workdir), str(statedir), *r, *common) for r in todo], args.jobs)
    run_parallel(call, tasks, args.jobs)


def runs_needed(task, seeds: list[int]) -> list[tuple]:
    """(scheme, method, n, seed) of the recovered networks an analysis task reads."""
    fn, a = task
    if fn is variance_one:
        return [(VARIANCE_SCHEME, a[2], a[3], s) for s in seeds]
    scheme, method, n, kind = a[2], a[3], a[4], a[6]
    return [(scheme, method, n, s) for s in (seeds[:1] if kind == "start" else seeds[:2])]


def analysis_output(workdir: Path, task) -> Path:
    fn, a = task
    if fn is variance_one:
        return workdir / "variance" / f"{a[2]}-N{a[3]}.json"
    return workdir / "paths" / f"{a[2]}-{a[3]}-N{a[4]}-{a[6]}.json"


def call(fn, fn_args) -> None:
    fn(*fn_args)


def experiment_plan(args) -> dict:
    comparison = read_json(Path(args.comparison) / "plan.json")
    if comparison is None:
        raise SystemExit(f"no comparison plan in {args.comparison}: run benchmarks/comparison.py plan first")
    schemes = {}
    key = f"practise-{args.blocks_from}-t22"
    if key not in comparison["selections"]:
        raise SystemExit(f"{key} not in the comparison plan: run its score stage and plan again")
    selection = comparison["selections"][key]
    schemes["blocks22"] = {"kind": "blocks", "blocks": selection["blocks"], "from": key, "measured": selection["measured"]}
    channels = comparison["channels"].get("channels-features-t22", {})
    if "ratio" not in channels:
        raise SystemExit("no channel-pruning ratio for the 22% target in the comparison plan")
    schemes["channels22"] = {"kind": "channels", "ratio": channels["ratio"], "from": "channels-features-t22",
                             "measured": channels["measured"]}
    return {"provenance": provenance(), "schemes": schemes,
            "seeds": list(range(args.first_seed, args.first_seed + args.num_sets)), "sizes": args.sizes,
            "iterations": args.iterations, "lr": args.lr, "optimiser": "SGD momentum 0.9, wd 1e-4, x0.1 at 40%"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["run", "report"])
    p.add_argument("--workdir", default=str(WORKDIR))
    p.add_argument("--statedir", default="/tmp/practise-theory-states", help="recovered weights (large; not committed)")
    p.add_argument("--comparison", default=str(COMPARISON), help="benchmarks/comparison.py's workdir")
    p.add_argument("--blocks-from", default="N500-s0", help="whose PRACTISE selection gives the blocks")
    p.add_argument("--data-root", default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    p.add_argument("--num-sets", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=3001)
    p.add_argument("--iterations", type=int, default=300, help="recovery iterations (paper: 2000; CPU budget here)")
    p.add_argument("--lr", type=float, default=0.02, help="the same for mimicking and cross-entropy")
    p.add_argument("--points", type=int, default=11)
    p.add_argument("--path-test-images", type=int, default=None,
                   help="evaluate paths on the first K test images (default all 10,000; fewer saves CPU time)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.stage == "run":
        run(args)
    else:
        from theory_report import report
        report(Path(args.workdir))


if __name__ == "__main__":
    main()
