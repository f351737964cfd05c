"""A user's own model factory named by import path ``module:callable``, through the API and
the CLI: the factories are defined here and named by this module's import path."""

import pytest
from torch import nn

from subdistill.cli import main
from subdistill.errors import ModelError
from subdistill.models import create_model

HERE = __name__  # the import path of this module, as pytest imported it


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


calls: list[dict] = []


def make_net(num_classes, width=4):
    """Takes num_classes but neither in_channels nor pretrained."""
    calls.append({"num_classes": num_classes, "width": width})
    return TinyNet(num_classes, width=width)


def make_pretrained(num_classes, in_channels=3, pretrained=False):
    calls.append({"pretrained": pretrained})
    return TinyNet(num_classes, in_channels)


def make_nothing():
    return "not a model"


NOT_CALLABLE = 3


@pytest.fixture(autouse=True)
def no_calls():
    calls.clear()


def test_a_factory_gets_only_the_arguments_it_takes():
    model = create_model(f"{HERE}:make_net", 5, in_channels=3, width=6)
    assert calls == [{"num_classes": 5, "width": 6}]
    assert model.head.out_features == 5 and model.head.in_features == 6
    with pytest.raises(ModelError, match="takes no 'pretrained' argument"):
        create_model(f"{HERE}:make_net", 5, pretrained=True)
    create_model(f"{HERE}:make_pretrained", 2, in_channels=1, pretrained="MY_WEIGHTS")
    assert calls[-1] == {"pretrained": "MY_WEIGHTS"}


def test_a_class_is_a_factory_and_its_arguments_are_checked():
    model = create_model(f"{HERE}:TinyNet", 3, in_channels=1)
    assert model.body[0].in_channels == 1
    with pytest.raises(ModelError, match="unexpected argument.*widht; it accepts: width"):
        create_model(f"{HERE}:TinyNet", 3, widht=2)


@pytest.mark.parametrize("name, message", [
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    (f"{HERE}:make_nett", "has no attribute 'make_nett'. Did you mean 'make_net'"),
    (f"{HERE}:NOT_CALLABLE", "is not callable"),
    (f"{HERE}:make_nothing", "returned a 'str', not a torch nn.Module"),
])
def test_bad_factories_raise_one_line_model_errors(name, message):
    with pytest.raises(ModelError, match=message) as info:
        create_model(name, 3)
    assert "\n" not in str(info.value)


def test_the_unknown_model_hint_keeps_torchvision_and_timm_apart():
    with pytest.raises(ModelError) as info:
        create_model("mobilenetv3_small", 3)
    message = str(info.value)
    assert "Did you mean 'mobilenet_v3_small'" in message
    assert "my_pkg.module:make_net" in message
    assert "layer paths differ from those of the torchvision model" in message


def test_layers_lists_a_user_factory_model(capsys):
    assert main(["layers", f"{HERE}:make_net", "--num-classes", "4", "--set", "width=5",
                 "--input-size", "3,8,8"]) == 0
    out = capsys.readouterr().out
    assert "body.0" in out and "1x5x8x8" in out and "head" in out and "1x4" in out
    assert main(["layers", f"{HERE}:make_nothing"]) == 2
    assert "not a torch nn.Module" in capsys.readouterr().err
