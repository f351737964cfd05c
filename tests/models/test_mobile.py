import pytest
import torch

from subdistill.errors import ModelError
from subdistill.models import MobileStudent, count_parameters, create_model


def expected_params(widths, blocks, expansion, num_classes, in_channels=3, stem=None):
    """By hand: bias-free convs, 2 BN parameters per channel, linear head."""
    stem = widths[0] if stem is None else stem
    total = 9 * in_channels * stem + 2 * stem
    channels = stem
    for width, count in zip(widths, blocks, strict=True):
        for block in range(count):
            cin = channels if block == 0 else width
            hidden = cin * expansion
            total += cin * hidden + 2 * hidden  # expand
            total += 9 * hidden + 2 * hidden  # depthwise
            total += hidden * width + 2 * width  # project
        channels = width
    return total + channels * num_classes + num_classes


def test_default_student():
    model = create_model("mobile_student", 5)
    assert isinstance(model, MobileStudent)
    assert count_parameters(model) == expected_params((16, 32, 64), (2, 2, 2), 4, 5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_configurable_layout():
    kwargs = dict(widths=(8, 16, 24, 32), expansion=2, blocks_per_stage=(1, 2, 1, 3), stem_width=4)
    model = create_model("mobile_student", 3, in_channels=1, **kwargs)
    assert count_parameters(model) == expected_params(
        (8, 16, 24, 32), (1, 2, 1, 3), 2, 3, in_channels=1, stem=4
    )
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    assert model.get_submodule("stages.0.0.expand.0").out_channels == 4 * 2


def test_stage_names_and_resolutions():
    model = create_model("mobile_student", 5).eval()
    names = dict(model.named_modules())
    for name in (
        "stem",
        "stages.0",
        "stages.2",
        "stages.0.1.depthwise",
        "stages.1.0.project",
        "fc",
    ):
        assert name in names
    assert "stages.3" not in names
    shapes = {}
    for i in range(3):
        model.stages[i].register_forward_hook(
            lambda m, a, out, i=i: shapes.__setitem__(i, tuple(out.shape))
        )
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert shapes == {0: (2, 16, 32, 32), 1: (2, 32, 16, 16), 2: (2, 64, 8, 8)}


def test_residual_only_when_shapes_match():
    model = create_model("mobile_student", 5)
    assert model.stages[0][0].residual  # stem 16 -> 16, stride 1
    assert not model.stages[1][0].residual  # 16 -> 32, stride 2
    assert model.stages[1][1].residual
    block = model.stages[1][1].eval()
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.project(block.depthwise(block.expand(x))))


def test_depthwise_is_grouped():
    conv = create_model("mobile_student", 5).get_submodule("stages.1.1.depthwise.0")
    assert conv.groups == conv.in_channels == conv.out_channels == 32 * 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"expansion": 0}, "expansion"),
        ({"blocks_per_stage": (1, 2)}, "one block count per stage"),
        ({"widths": ()}, "one block count per stage"),
    ],
)
def test_invalid_configurations(kwargs, match):
    with pytest.raises(ModelError, match=match):
        create_model("mobile_student", 5, **kwargs)


def test_no_pretrained():
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model("mobile_student", 5, pretrained=True)


def test_no_module_output_is_modified_in_place():
    model = create_model("mobile_student", 4, widths=(8, 16), blocks_per_stage=2).train()
    captured = []
    for module in model.modules():
        module.register_forward_hook(lambda m, a, out: captured.append((out, out.clone())))
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert len(captured) == len(list(model.modules()))
    for out, copy in captured:
        assert torch.equal(out, copy)
