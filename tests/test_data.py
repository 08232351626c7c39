import gzip
import struct
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import small_transforms
from practise.data import (ImageFolderSource, TensorSource, TransformConfig, Transforms, build_tiny_set,
                           load_fashion_mnist, sample_tiny_set)
from practise.seeding import seed_everything


def test_sampling_is_seeded_and_without_duplicates():
    labels = [i % 10 for i in range(300)]
    a = sample_tiny_set(300, 50, torch.Generator().manual_seed(1), labels)
    b = sample_tiny_set(300, 50, torch.Generator().manual_seed(1), labels)
    c = sample_tiny_set(300, 50, torch.Generator().manual_seed(2), labels)
    assert a == b and a != c and len(set(a)) == 50


def test_sampling_rule_small_n_random_classes_large_n_balanced():
    labels = [i % 10 for i in range(5000)]
    small = Counter(labels[i] for i in sample_tiny_set(5000, 50, torch.Generator().manual_seed(0), labels))
    assert sum(small.values()) == 50 and len(set(small.values())) > 1  # random class per draw: not balanced
    large = Counter(labels[i] for i in sample_tiny_set(5000, 1000, torch.Generator().manual_seed(0), labels))
    assert set(large.values()) == {100}
    with pytest.raises(ValueError, match="only 5000"):
        sample_tiny_set(5000, 6000, torch.Generator(), labels)


def write_png(path, value, size=20, mode="L"):
    Image.fromarray(np.full((size, size) if mode == "L" else (size, size, 3), value, np.uint8), mode).save(path)


def test_folder_with_class_subfolders_is_labelled_and_bad_files_skipped(tmp_path, caplog):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            write_png(tmp_path / cls / f"{i}.png", 40 * i)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    source = ImageFolderSource(tmp_path)
    assert source.classes == ["cat", "dog"] and len(source) == 9 and len(source.skipped_files) == 1
    tiny = build_tiny_set(source, 8, seed_everything(0), small_transforms(16))
    assert len(tiny) == 8 and len(tiny.skipped) == 1 and "broken.png" in tiny.skipped[0]
    assert [p.endswith("notes.txt") for p in tiny.non_images] == [True]
    assert all("broken" not in i for i in tiny.identifiers)
    assert tiny.eval_tensor().shape == (8, 1, 16, 16) and sorted(set(tiny.labels)) == [0, 1]


def test_flat_folder_is_unlabelled_and_colour_converted(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", 100, mode="RGB")
    tiny = build_tiny_set(ImageFolderSource(tmp_path), None, seed_everything(0), small_transforms(16))
    assert tiny.labels is None and len(tiny) == 3
    with pytest.raises(ValueError, match="no labels"):
        tiny.label_tensor()


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no images found"):
        ImageFolderSource(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolderSource(tmp_path / "nope")


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4]))
    source = load_fashion_mnist("test", tmp_path)
    assert len(source) == 3 and source.labels == [3, 1, 4]
    assert torch.equal(source.load(2, 1)[0], torch.from_numpy(images[2].astype(np.uint8)))
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="'val'.*train, test"):
        load_fashion_mnist("val", tmp_path)


def test_transforms_shapes_and_determinism():
    image = (torch.rand(3, 300, 400) * 255).to(torch.uint8)
    t = Transforms(TransformConfig())  # ImageNet: 256 -> centre 224, random-resized-crop for training
    assert t.config.eval_resize == 256 and t.config.train_augment == "random-resized-crop"
    assert t.evaluate(image).shape == (3, 224, 224)
    a, b = t.train(image, torch.Generator().manual_seed(0)), t.train(image, torch.Generator().manual_seed(0))
    assert a.shape == (3, 224, 224) and torch.equal(a, b)
    small = Transforms(TransformConfig(image_size=28, channels=1))
    assert small.config.train_augment == "pad-crop"
    img = (torch.rand(1, 28, 28) * 255).to(torch.uint8)
    assert small.train(img, torch.Generator()).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="'blur'"):
        TransformConfig(augment="blur")


def test_same_seed_same_tiny_set():
    source = TensorSource((torch.rand(200, 1, 8, 8) * 255).to(torch.uint8), torch.arange(200) % 10)
    a = build_tiny_set(source, 20, seed_everything(5), small_transforms(8))
    b = build_tiny_set(source, 20, seed_everything(5), small_transforms(8))
    assert a.identifiers == b.identifiers and torch.equal(a.eval_tensor(), b.eval_tensor())
