"""Out-of-domain tiny sets from data shipped by scikit-learn and scikit-image."""
import pytest
import torch

from helpers import small_transforms
from practise.data import build_tiny_set
from practise.data import open_source

pytest.importorskip("sklearn")
pytest.importorskip("skimage")


def test_digits_are_unlabelled_28px_images_spanning_the_grey_range():
    digits = open_source("sklearn-digits")
    assert len(digits) == 1797 and digits.labels is None
    image = digits.load(0, 1)
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and int(image.max()) > 200
    assert digits.load(0, 3).shape == (3, 28, 28)


def test_photo_crops_are_seeded_and_varied():
    from practise.data.out_of_domain import photo_crops

    a, b = photo_crops(20, seed=1), photo_crops(20, seed=1)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, photo_crops(20, seed=2).images)
    assert a.labels is None and a.images.shape == (20, 1, 28, 28)
    assert len({int(x.float().mean()) for x in a.images}) > 5  # crops of different photos and places
    with pytest.raises(ValueError, match="at least 1"):
        photo_crops(0)


def test_out_of_domain_sources_make_unlabelled_tiny_sets():
    tiny = build_tiny_set(open_source("photo-crops"), 30, torch.Generator().manual_seed(0), small_transforms(16))
    assert len(tiny) == 30 and tiny.labels is None and tiny.eval_tensor().shape == (30, 1, 16, 16)


def test_gaussian_noise_is_seeded_unstructured_and_clipped():
    from practise.data.out_of_domain import gaussian_noise

    noise = open_source("gaussian-noise")
    assert len(noise) == 2000 and noise.labels is None and noise.load(0, 1).shape == (1, 28, 28)
    a = gaussian_noise(50, seed=3).images.float()
    assert torch.equal(a, gaussian_noise(50, seed=3).images.float())
    assert not torch.equal(a, gaussian_noise(50, seed=4).images.float())
    assert 120 < float(a.mean()) < 135 and 50 < float(a.std()) < 70  # mean 127.5, std 64 before clipping
    # neighbouring pixels are independent: no image structure
    assert abs(float(torch.corrcoef(torch.stack([a[..., :-1].flatten(), a[..., 1:].flatten()]))[0, 1])) < 0.05
    with pytest.raises(ValueError, match="at least 1"):
        gaussian_noise(0)
