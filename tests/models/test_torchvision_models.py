"""Random weights only: pretrained downloads are replaced by a seeded fake get_model."""

import pytest
import torch
import torchvision

from subdistill.errors import ModelError
from subdistill.models import count_parameters, create_model, list_models

REAL_GET_MODEL = torchvision.models.get_model


@pytest.fixture
def fake_pretrained(monkeypatch):
    """get_model(weights="DEFAULT") returns the same seeded random 1000-class model each time."""

    def get_model(name, weights=None, **kwargs):
        assert weights == "DEFAULT"
        torch.manual_seed(0)
        return REAL_GET_MODEL(name, weights=None, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", get_model)


def test_every_torchvision_classifier_is_registered():
    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    assert set(torchvision_names) <= set(list_models())
    ours = {
        "cifar_resnet",
        "resnet8x4",
        "resnet32x4",
        "cifar_resnet18",
        "cifar_resnet20",
        "cifar_resnet56",
        "mobile_student",
    }
    assert not ours & set(torchvision_names)


@pytest.mark.parametrize(
    "name, size",
    [("resnet18", 32), ("mobilenet_v3_small", 32), ("efficientnet_b0", 32), ("vit_b_16", 224)],
)
def test_random_weights_forward(name, size):
    model = create_model(name, 7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 7)


def test_resnet18_parameter_count():
    # torchvision ResNet-18 has 11,689,512 parameters with 1000 classes; the head is 512*c + c.
    assert count_parameters(create_model("resnet18", 10)) == 11_689_512 - 513 * 1000 + 513 * 10


def test_builder_kwargs_pass_through():
    model = create_model("vit_b_16", 3, image_size=32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_bad_builder_kwargs():
    with pytest.raises(
        ModelError, match="torchvision model 'resnet18' rejected arguments \\['foo'\\]"
    ):
        create_model("resnet18", 10, foo=1)


def test_in_channels_adapts_stem():
    model = create_model("resnet18", 4, in_channels=1).eval()
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_in_channels_refused_when_input_is_transformed():
    with pytest.raises(ModelError, match="in_channels=3"):
        create_model(
            "googlenet",
            4,
            in_channels=1,
            transform_input=True,
            aux_logits=False,
            init_weights=False,
        )


def test_pretrained_replaces_heads(fake_pretrained):
    model = create_model("resnet18", 5, pretrained=True).eval()
    assert model.fc.out_features == 5
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    googlenet = create_model("googlenet", 5, pretrained=True, init_weights=False)
    assert [
        googlenet.aux1.fc2.out_features,
        googlenet.aux2.fc2.out_features,
        googlenet.fc.out_features,
    ] == [5, 5, 5]


def test_pretrained_keeps_imagenet_head(fake_pretrained):
    torch.manual_seed(0)
    reference = REAL_GET_MODEL("resnet18", weights=None)
    model = create_model("resnet18", 1000, pretrained=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )


def test_pretrained_stem_gives_rgb_response_on_grey_input(fake_pretrained):
    rgb = create_model("resnet18", 1000, pretrained=True).eval()
    two_channel = create_model("resnet18", 1000, in_channels=2, pretrained=True).eval()
    grey = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            two_channel(grey.expand(1, 2, 32, 32)), rgb(grey.expand(1, 3, 32, 32))
        )
