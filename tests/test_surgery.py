import torch
from practise.surgery import PassThrough

from helpers import tiny_resnet, weird_model
from practise.blocks import count_params, find_blocks
from practise.surgery import drop_blocks


def test_drop_returns_new_model_and_leaves_teacher_untouched():
    teacher = tiny_resnet()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = drop_blocks(teacher, ["layer2.1", "layer3.1"])
    assert student is not teacher
    assert isinstance(teacher.layer2[1], type(teacher.layer2[0]))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert isinstance(student.layer2[1], PassThrough)


def test_param_count_falls_by_exactly_the_dropped_blocks():
    teacher = weird_model()
    blocks = {b.name: b for b in find_blocks(teacher, torch.zeros(1, 1, 16, 16))}
    student = drop_blocks(teacher, ["trunk.1", "trunk.5"])
    assert count_params(teacher) - count_params(student) == blocks["trunk.1"].params + blocks["trunk.5"].params


def test_dropped_block_is_not_run():
    student = drop_blocks(tiny_resnet(), ["layer1.2"])
    calls = []
    for module in tiny_resnet().layer1[2].modules():
        module.register_forward_hook(lambda *a: calls.append(1))
    student(torch.randn(2, 1, 16, 16))
    assert not calls and not any(n.startswith("layer1.2.") for n, _ in student.named_modules())


def test_zeroed_residual_branch_drops_with_identical_outputs():
    teacher = tiny_resnet()
    with torch.no_grad():  # branch output = bn2(...) = 0 when its affine weight and bias are 0
        teacher.layer2[1].bn2.weight.zero_()
        teacher.layer2[1].bn2.bias.zero_()
    x = torch.randn(4, 1, 16, 16)
    student = drop_blocks(teacher, ["layer2.1"]).eval()
    assert torch.allclose(teacher.eval()(x), student(x), atol=1e-6)


def test_zeroed_branch_custom_model():
    teacher = weird_model()
    with torch.no_grad():
        teacher.trunk[3].f[4].weight.zero_()
        teacher.trunk[3].f[4].bias.zero_()
    x = torch.randn(3, 1, 16, 16)
    assert torch.allclose(teacher(x), drop_blocks(teacher, ["trunk.3"])(x), atol=1e-6)
