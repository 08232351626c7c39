"""Build the Fashion-MNIST subset shipped for `practise demo` (no download at run time).

    python benchmarks/make_demo_subset.py

500 training images (the pool the demo draws its tiny set from) and 2,000 test images,
drawn with a fixed seed; the indices into the original files are stored beside them.
"""
from __future__ import annotations

import io

import numpy as np
import torch

from common import ROOT
from practise.data import load_fashion_mnist
from practise.files import atomic_write

OUT = ROOT / "practise" / "assets" / "fashion_mnist_demo.npz"


def main(seed: int = 2023, n_train: int = 500, n_test: int = 2000) -> None:
    g = torch.Generator().manual_seed(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        source = load_fashion_mnist(split)
        idx = torch.randperm(len(source), generator=g)[:n].sort().values
        arrays[f"{split}_images"] = source.images[idx, 0].numpy()
        arrays[f"{split}_labels"] = np.asarray(source.labels, dtype=np.uint8)[idx.numpy()]
        arrays[f"{split}_indices"] = idx.numpy().astype(np.int32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(OUT, lambda tmp: open(tmp, "wb").write(buffer.getvalue()))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
