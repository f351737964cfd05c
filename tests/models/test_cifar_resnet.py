import pytest
import torch

from subdistill.errors import ModelError
from subdistill.models import CifarResNet, count_parameters, create_model


def expected_params(stem, widths, blocks, num_classes, in_channels=3):
    """Parameter count of a CIFAR ResNet by hand: convs have no bias, BN has 2 per channel."""
    total = 9 * in_channels * stem + 2 * stem
    channels = stem
    for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            cin = channels if block == 0 else width
            stride = 2 if index > 0 and block == 0 else 1
            total += 9 * cin * width + 2 * width + 9 * width * width + 2 * width
            if stride != 1 or cin != width:
                total += cin * width + 2 * width
        channels = width
    return total + channels * num_classes + num_classes


PRESETS = {
    # name: (stem, widths, blocks per stage, published size for 100 classes in millions)
    "resnet8x4": (32, (64, 128, 256), (1, 1, 1), 1.23),
    "resnet32x4": (32, (64, 128, 256), (5, 5, 5), 7.43),
    "cifar_resnet20": (16, (16, 32, 64), (3, 3, 3), 0.28),
    "cifar_resnet56": (16, (16, 32, 64), (9, 9, 9), 0.86),
    "cifar_resnet18": (64, (64, 128, 256, 512), (2, 2, 2, 2), 11.22),
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parameter_counts(name):
    stem, widths, blocks, millions = PRESETS[name]
    count = count_parameters(create_model(name, 100))
    assert count == expected_params(stem, widths, blocks, 100)
    assert round(count / 1e6, 2) == millions


@pytest.mark.parametrize("name", PRESETS)
def test_preset_output_and_stage_shapes(name):
    _, widths, _, _ = PRESETS[name]
    model = create_model(name, 7).eval()
    stage_shapes = {}
    for index in range(len(widths)):
        model.get_submodule(f"layer{index + 1}").register_forward_hook(
            lambda m, a, out, i=index: stage_shapes.__setitem__(i, tuple(out.shape))
        )
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert stage_shapes == {i: (2, w, 32 >> i, 32 >> i) for i, w in enumerate(widths)}


def test_module_names_are_stable():
    names = dict(create_model("cifar_resnet", 10, depth=18, widths=(8, 16, 32, 64)).named_modules())
    for name in (
        "conv1",
        "bn1",
        "layer1",
        "layer4",
        "layer1.0",
        "layer1.1.conv1",
        "layer1.0.bn2",
        "layer2.0.downsample.0",
        "layer2.0.downsample.1",
        "fc",
    ):
        assert name in names
    assert "layer5" not in names and "layer1.2" not in names
    assert "layer1.0.downsample" not in names  # width 8 stem into width 8 stage: identity
    assert "maxpool" not in names


def test_general_depth_and_widths():
    model = create_model("cifar_resnet", 3, in_channels=1, depth=14, widths=(8, 16, 32))
    assert count_parameters(model) == expected_params(8, (8, 16, 32), (2, 2, 2), 3, in_channels=1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)


def test_default_is_resnet20():
    assert count_parameters(create_model("cifar_resnet", 10)) == count_parameters(
        create_model("cifar_resnet20", 10)
    )


def test_four_stage_depth_matches_resnet18():
    model = create_model("cifar_resnet", 100, depth=18, widths=(64, 128, 256, 512))
    assert count_parameters(model) == count_parameters(create_model("cifar_resnet18", 100))


def test_blocks_per_stage_sequence_and_stem_width():
    model = create_model(
        "cifar_resnet", 5, widths=(8, 16, 32), blocks_per_stage=(1, 2, 3), stem_width=4
    )
    assert isinstance(model, CifarResNet)
    assert count_parameters(model) == expected_params(4, (8, 16, 32), (1, 2, 3), 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 21}, "6n\\+2"),
        ({"depth": 2}, "6n\\+2"),
        ({"depth": 20, "widths": (8, 16, 32, 64)}, "8n\\+2"),
        ({"depth": 20, "blocks_per_stage": 3}, "not both"),
        ({"widths": (16, 32)}, "3 or 4 entries"),
        ({"blocks_per_stage": (1, 2)}, "one block count per stage"),
        ({"blocks_per_stage": 0}, ">= 1 block"),
    ],
)
def test_invalid_configurations(kwargs, match):
    with pytest.raises(ModelError, match=match):
        create_model("cifar_resnet", 10, **kwargs)


def test_no_module_output_is_modified_in_place():
    model = create_model("cifar_resnet", 4, depth=8, widths=(8, 16, 16)).train()
    captured = []

    def keep(module, args, out):
        captured.append((out, out.clone()))

    for module in model.modules():
        module.register_forward_hook(keep)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert len(captured) == len(list(model.modules()))
    for out, copy in captured:
        assert torch.equal(out, copy)
