import torch

# the suite's speed target is for 2 cores; more threads only add noise to the timing tests
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


import pytest  # noqa: E402

from helpers import tiny_resnet, write_png_folder  # noqa: E402


@pytest.fixture
def image_folder(tmp_path):
    """3 classes x 8 random 20 px grey PNGs."""
    return write_png_folder(tmp_path / "images")


@pytest.fixture
def weights(tmp_path):
    """A seeded tiny resnet20 teacher's state dict, saved as a .pth file."""
    torch.save(tiny_resnet().state_dict(), tmp_path / "teacher.pth")
    return tmp_path / "teacher.pth"


@pytest.fixture
def modelled_latency(monkeypatch, request):
    """Deterministic latency for selection logic: measurements follow the test module's COST_MS exactly."""
    import practise.selection as selection
    from helpers import modelled_saving

    monkeypatch.setattr(selection, "measure_saving", modelled_saving(request.module.COST_MS))
