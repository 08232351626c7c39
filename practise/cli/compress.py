"""`practise compress`: the whole PRACTISE job: score, select, drop, recover, evaluate, report."""
from __future__ import annotations

from ..artifacts import check_output_folder, write_compressed_outputs
from ..distributed import current_group
from ..data import HeadSource, open_source
from ..pipeline import check_against_model, compress
from .arguments import (POSITIVE, add_candidate_args, add_criterion_arg, add_data_args, add_repair_arg, add_latency_args,
                        add_model_args, add_output_args, add_recovery_args, add_scoring_args, add_synthesis_args,
                        latency_target)
from .common import (check_workdir, compress_config, model_from_args, preprocessing_for, progress_for,
                     tiny_set_from_args)
from .summary import print_summary
from .synthesize import synthesize_from_args
from .text import command_line, is_hf_spec, run_text_compress
from ..errors import UsageError


def add_parser(sub, common) -> None:
    p = sub.add_parser("compress", parents=[common], help="the whole PRACTISE job: score, select, drop, recover, report")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-latency", type=latency_target, help="latency reduction to reach, e.g. 22%% or 0.22")
    target.add_argument("--num-blocks", type=POSITIVE, help="drop this many best-scoring blocks (the paper's rule)")
    add_output_args(p, "output folder: model.safetensors, report.md/json, blocks.png")
    p.add_argument("--data-free", type=POSITIVE, metavar="N",
                   help="no images: synthesize N from the model (DeepInversion) into OUT/synthesized and use them")
    add_criterion_arg(p)
    add_repair_arg(p)
    add_model_args(p), add_data_args(p, required=False), add_candidate_args(p), add_latency_args(p)
    add_scoring_args(p), add_recovery_args(p), add_synthesis_args(p)
    p.set_defaults(func=run)


def run(a) -> None:
    if is_hf_spec(a.model):
        return run_text_compress(a, compress_config(a), progress_for(a))
    if a.data_free is not None and current_group().distributed:
        raise UsageError("--data-free under torchrun would synthesize on every rank: run `practise synthesize` once, "
                         "then pass its folder as --data")
    if (a.data is None) == (a.data_free is None):
        raise UsageError("give exactly one of --data (a folder or data set) and --data-free N (synthesize N images)")
    config = compress_config(a)
    out = check_output_folder(a.out, a.overwrite)
    check_workdir(a.workdir)
    model = model_from_args(a)
    preprocessing = preprocessing_for(a, model, a.data)
    transforms = preprocessing.transforms
    eval_source = open_source(a.eval_data) if a.eval_data else None
    if eval_source is not None and a.eval_limit:
        eval_source = HeadSource(eval_source, a.eval_limit)
    # candidates, patterns, feature layer and block count checked before synthesis or scoring
    check_against_model(model, transforms.config.sample_shape, config)
    if a.data_free is not None:  # the synthesized folder then serves as the tiny set, like any other
        synthesize_from_args(a, model, transforms, a.data_free, out / "synthesized", a.overwrite)
        a.data, a.num_images = str(out / "synthesized"), a.data_free
    tiny = tiny_set_from_args(a, transforms)
    result = compress(model, tiny, config, eval_source=eval_source, eval_transforms=transforms,
                      workdir=a.workdir or out / "work", progress=progress_for(a))
    if result is None:  # a torchrun rank other than 0: its share of the scoring is done
        return
    written = write_compressed_outputs(result, model, preprocessing, out, a.overwrite, command=command_line(a))
    print_summary(written.report, written.paths.values())
