"""Random weights only: pretrained downloads are replaced by a seeded fake get_model, or by a
seeded state dict where torchvision would download one."""

import pytest
import torch
import torchvision
from torchvision.models import ResNet18_Weights, ResNet101_Weights, WeightsEnum

from subdistill.config import ModelConfig, from_mapping
from subdistill.errors import ModelError
from subdistill.models import count_parameters, create_model, list_models
from subdistill.models.torchvision_models import weight_set

REAL_GET_MODEL = torchvision.models.get_model


@pytest.fixture
def fake_pretrained(monkeypatch):
    """get_model(weights=DEFAULT) returns the same seeded random 1000-class model each time."""

    def get_model(name, weights=None, **kwargs):
        assert weights is torchvision.models.get_model_weights(name).DEFAULT
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


# --- named weight sets ------------------------------------------------------------------------


def test_pretrained_names_a_weight_set():
    assert weight_set("resnet101", True) is ResNet101_Weights.IMAGENET1K_V2  # DEFAULT
    assert weight_set("resnet101", "IMAGENET1K_V1") is ResNet101_Weights.IMAGENET1K_V1
    with pytest.raises(ModelError) as info:
        weight_set("resnet101", "IMAGENET1K_V3")
    message = str(info.value)
    assert "no weight set 'IMAGENET1K_V3'" in message and "\n" not in message
    assert "Available: IMAGENET1K_V1, IMAGENET1K_V2 (pretrained: true = DEFAULT = IMAGENET1K_V2)" \
        in message


def test_named_weights_are_what_torchvision_loads(monkeypatch):
    loaded = []

    def get_state_dict(self, *args, **kwargs):  # instead of the download
        loaded.append(self)
        torch.manual_seed(0)
        return REAL_GET_MODEL("resnet18", weights=None).state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    model = create_model("resnet18", 5, pretrained="IMAGENET1K_V1")
    assert loaded == [ResNet18_Weights.IMAGENET1K_V1] and model.fc.out_features == 5
    with pytest.raises(ModelError, match="no weight set 'V9'"):
        create_model("resnet18", 5, pretrained="V9")
    assert len(loaded) == 1


def test_a_weight_set_name_is_a_model_config_value():
    config = from_mapping(ModelConfig, {"name": "resnet101", "pretrained": "IMAGENET1K_V1"})
    assert config.pretrained == "IMAGENET1K_V1"
    assert from_mapping(ModelConfig, {"name": "resnet101", "pretrained": True}).pretrained is True


def test_a_weight_set_name_on_a_model_without_weight_sets():
    with pytest.raises(ModelError, match="has no pretrained weights"):
        create_model("cifar_resnet20", 5, pretrained="IMAGENET1K_V1")
    with pytest.raises(ModelError, match=r"by a tag of the model name instead \(timm:<model>\.<tag>"):
        create_model("timm:resnet18", 5, pretrained="IMAGENET1K_V1")
