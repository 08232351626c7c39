"""`practise train`: train a built-in architecture from scratch (the shipped teachers), resumably."""
from __future__ import annotations

import shlex

from ..artifacts import check_writable_file
from ..data import open_source
from ..device import resolve_device
from ..models import create_model
from ..seeding import seed_everything
from ..training import OPTIMIZERS, TrainConfig, save_trained_model, train_classifier_
from .arguments import (POSITIVE, add_architecture_args, add_device_arg, add_image_size_arg, add_normalisation_args,
                        add_output_args, add_seed_arg, number)
from .common import check_workdir, progress_for, transforms_for
from ..errors import UsageError


def add_parser(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a built-in architecture from scratch (teachers), resumably")
    p.add_argument("--model", required=True, help="architecture name")
    p.add_argument("--data", required=True, help="labelled training images: folder or fashion-mnist:train")
    p.add_argument("--eval-data", required=True, help="test images: folder or fashion-mnist:test")
    add_output_args(p, "weights file (.safetensors); a model card is written beside it")
    p.add_argument("--epochs", type=POSITIVE, default=20)
    p.add_argument("--train-batch-size", type=POSITIVE, default=128)
    p.add_argument("--lr", type=number(0.0, strict=True), default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd (nesterov, the CNN teachers) or adamw (transformers; use e.g. --lr 0.001 "
                        "--weight-decay 0.05)")
    p.add_argument("--weight-decay", type=number(0.0), default=5e-4, help="(default 5e-4)")
    add_architecture_args(p)
    add_image_size_arg(p)
    add_normalisation_args(p)
    add_seed_arg(p, "seeds the initialisation and the batch order")
    add_device_arg(p)
    p.add_argument("--workdir", help="checkpoint folder; rerunning resumes after the last finished epoch")
    p.set_defaults(func=run)


def run(a) -> None:
    out = check_writable_file(a.out, a.overwrite)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out} must end in .safetensors (the weights file; a model card is written beside it)")
    check_workdir(a.workdir)
    kwargs = {k: v for k, v in (("num_classes", a.num_classes), ("in_channels", a.in_channels)) if v is not None}
    model = create_model(a.model, **kwargs)
    transforms = transforms_for(a, model, a.data)
    train, test = open_source(a.data), open_source(a.eval_data)
    if train.labels is None:
        raise UsageError(f"--data {a.data} is unlabelled; training needs one subfolder per class")
    if len(train) < a.train_batch_size:
        raise UsageError(f"--data {a.data} holds {len(train)} images, fewer than one batch "
                         f"(--train-batch-size {a.train_batch_size}); lower the batch size or add images")
    config = TrainConfig(epochs=a.epochs, batch_size=a.train_batch_size, lr=a.lr, seed=a.seed,
                         weight_decay=a.weight_decay, optimizer=a.optimizer)
    seed_everything(a.seed)
    device = resolve_device(a.device)
    bar = progress_for(a)

    def progress(epoch: int, step: int, steps: int, loss: float) -> None:
        if step == 0:
            bar.end()
            bar.start(f"epoch {epoch + 1}/{config.epochs}", steps)
        bar.advance(1)

    history = train_classifier_(model, train, test, transforms, config, a.workdir or out.with_suffix(".work"),
                                str(device), progress)
    bar.end()
    command = "practise " + shlex.join(a.argv)
    save_trained_model(model, out, history, config, a.data, transforms, command, overwrite=a.overwrite)
    print(f"saved {out} (test top-1 {100 * history[-1]['test_top1']:.2f}%) and its model card {out.with_suffix('.md')}")
