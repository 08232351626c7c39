"""The `practise` command: argument parsing only; everything it does is a library call.

One module per subcommand (``add_parser`` declares its flags, ``run`` does the work);
flags several subcommands share are declared once in ``arguments.py``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..device import resolve_device
from ..distributed import check_ranks_agree, current_group, finish, init_from_environment, path_fingerprint
from ..files import one_line
from .errors import FlagFormatter, flag_message
from .text import is_hf_spec
from ..data.catalog import named_source
from ..errors import USER_ERRORS, UsageError
from . import blocks, compress, demo, evaluate, export, latency, score, synthesize, train
from .arguments import OneLineParser

SUBCOMMANDS = (blocks, latency, score, compress, synthesize, demo, train, evaluate, export)  # in --help order


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="practise", description="Make a pretrained network faster with a tiny "
                                     "set of images by dropping residual blocks (PRACTISE, CVPR 2023).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # the same flags after the subcommand; SUPPRESS keeps them from resetting the values above
    common = OneLineParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log every step")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub, common)
    return parser


# image-model flags, meaningless for a token model (hf:): given with one, they are a mistake
IMAGE_ONLY_FLAGS = {"weights": "--weights", "image_size": "--image-size", "mean": "--mean", "std": "--std",
                    "num_classes": "--num-classes", "in_channels": "--in-channels", "data_free": "--data-free"}
# token-model flags, meaningless for an image model
TOKEN_ONLY_FLAGS = {"seq_len": "--seq-len"}


def check_common(a) -> None:
    """What every subcommand can check before loading anything: the device exists here, and
    no flag was given that the model kind ignores."""
    if getattr(a, "device", None):
        resolve_device(a.device)
    token_model = is_hf_spec(getattr(a, "model", None))
    wrong = IMAGE_ONLY_FLAGS if token_model else TOKEN_ONLY_FLAGS
    given = [flag for key, flag in wrong.items() if getattr(a, key, None) is not None]
    if given:
        kind = "a Hugging Face token model (hf:)" if token_model else "an image model"
        raise UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {kind}; "
                         "leave them out")


# subcommands whose scoring torchrun spreads over processes (practise.distributed)
DISTRIBUTED_COMMANDS = ("score", "compress")


def job_description(a) -> dict:
    """What every rank of a torchrun job must agree on: its arguments and what its files hold."""
    files = {key: path_fingerprint(getattr(a, key)) for key in ("data", "weights", "eval_data")
             if getattr(a, key, None) and named_source(getattr(a, key)) is None}  # named data sets: by name
    model = getattr(a, "model", None)
    if model and (is_hf_spec(model) or Path(model).exists()):
        files["model"] = path_fingerprint(model[len("hf:"):] if is_hf_spec(model) else model)
    return {"arguments": " ".join(a.argv), **files}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in model cards
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:  # library logs name parameters; show the flags
        handler.setFormatter(FlagFormatter("%(levelname)s %(name)s: %(message)s"))
    completed = False
    try:
        check_common(args)
        if args.command in DISTRIBUTED_COMMANDS:
            group = init_from_environment()  # under torchrun: join the group (one process: nothing happens)
            check_ranks_agree(group, job_description(args))
        args.func(args)
        completed = True
    except USER_ERRORS as exc:  # what the user gave (PractiseError kinds) or a file system refusal
        if current_group().is_main:  # under torchrun one line in all, from rank 0
            print(f"practise {args.command}: error: {flag_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"practise {args.command}: interrupted; finished work is kept in the work folder, and rerunning "
              f"the same command resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user mistake: say so in one line; -v shows the traceback
        if args.verbose:
            raise
        group = current_group()
        rank = f" (rank {group.rank} of {group.world_size})" if group.distributed else ""
        print(f"practise {args.command}: internal error{rank}: {type(exc).__name__}: {one_line(exc)[:300]} "
              f"(rerun with -v for the traceback, and please report it)", file=sys.stderr)
        return 1
    finally:
        finish(completed)
    return 0
