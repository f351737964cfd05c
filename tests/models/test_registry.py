import os
import sys

import pytest
import torch
from torch import nn

from subdistill.errors import ModelError
from subdistill.models import (
    count_parameters,
    create_model,
    list_models,
    load_weights,
    register_model,
    register_prefix,
    registry,
    save_weights,
    weights_bytes,
)


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made inside a test do not leak into others."""
    for names in (registry.MODELS, registry.MODEL_PREFIXES):
        monkeypatch.setattr(names, "_entries", dict(names._entries))


def _trained_copy(name: str, **kwargs) -> nn.Module:
    """A model whose BN running statistics differ from their initial values."""
    model = create_model(name, 4, **kwargs)
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 32, 32))
    return model.eval()


# --- names -------------------------------------------------------------------------------


def test_list_models_is_sorted_and_has_ours_and_torchvision():
    names = list_models()
    assert names == sorted(names)
    for name in (
        "cifar_resnet",
        "resnet8x4",
        "resnet32x4",
        "cifar_resnet18",
        "cifar_resnet20",
        "cifar_resnet56",
        "mobile_student",
        "resnet18",
        "vit_b_16",
    ):
        assert name in names


def test_list_models_pattern():
    assert list_models("resnet*x4") == ["resnet32x4", "resnet8x4"]
    assert list_models("no_such_*") == []


def test_unknown_name_gives_hint_and_pointer():
    with pytest.raises(ModelError) as info:
        create_model("resnet8x5", 10)
    message = str(info.value)
    assert "'resnet8x5'" in message
    assert "Did you mean" in message and "'resnet8x4'" in message
    assert "subdistill list models" in message
    assert "timm:<name>" in message


def test_unknown_prefix(isolated_registry):
    with pytest.raises(ModelError, match=r"unknown model prefix 'tim'.*Did you mean 'timm'"):
        create_model("tim:resnet18", 10)


def test_bad_kwargs_name_the_accepted_ones():
    with pytest.raises(ModelError) as info:
        create_model("cifar_resnet", 10, dept=20)
    message = str(info.value)
    assert "dept" in message
    for accepted in ("depth", "widths", "blocks_per_stage", "stem_width"):
        assert accepted in message


def test_preset_accepts_no_extra_kwargs():
    with pytest.raises(ModelError, match=r"unexpected argument.*depth"):
        create_model("resnet8x4", 10, depth=20)


@pytest.mark.parametrize("num_classes, in_channels", [(0, 3), (10, 0)])
def test_invalid_sizes(num_classes, in_channels):
    with pytest.raises(ModelError, match=">= 1"):
        create_model("resnet8x4", num_classes, in_channels)


def test_no_pretrained_weights_for_our_models():
    with pytest.raises(ModelError, match="'resnet8x4' has no pretrained weights"):
        create_model("resnet8x4", 10, pretrained=True)


def test_pretrained_and_weights_conflict(tmp_path):
    with pytest.raises(ModelError, match="not both"):
        create_model("resnet18", 10, pretrained=True, weights=tmp_path / "w.safetensors")


# --- registration -------------------------------------------------------------------------


def test_register_custom_model(isolated_registry):
    @register_model("tiny_mlp")
    def tiny_mlp(
        num_classes: int, in_channels: int = 3, pretrained: bool = False, hidden: int = 8
    ) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels, hidden), nn.Linear(hidden, num_classes)
        )

    model = create_model("tiny_mlp", 5, in_channels=2, hidden=4)
    assert model(torch.zeros(3, 2)).shape == (3, 5)
    assert "tiny_mlp" in list_models()
    with pytest.raises(ModelError, match="hidden"):
        create_model("tiny_mlp", 5, width=4)


def test_register_duplicate_and_bad_names(isolated_registry):
    with pytest.raises(ModelError, match="already registered"):
        register_model("resnet8x4")(lambda num_classes, in_channels=3, pretrained=False: None)
    with pytest.raises(ModelError, match="':'"):
        register_model("a:b")
    with pytest.raises(ModelError, match="already registered"):
        register_prefix("timm", lambda name: None)


def test_prefix_resolver(isolated_registry):
    seen = []

    def resolve(name):
        seen.append(name)
        return lambda num_classes, in_channels=3, pretrained=False, **kw: nn.Linear(
            in_channels, num_classes
        )

    register_prefix("toy", resolve)
    model = create_model("toy:anything", 6, in_channels=2)
    assert seen == ["anything"]
    assert model.out_features == 6 and model.in_features == 2


# --- timm prefix --------------------------------------------------------------------------


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(ModelError, match=r"pip install subdistill\[timm\]"):
        create_model("timm:resnet18", 10)


def test_timm_happy_path():
    pytest.importorskip("timm")
    model = create_model("timm:resnet18", 5, in_channels=1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 5)  # train-mode BN needs a batch > 1
    with pytest.raises(ModelError, match="Unknown timm model 'resnet18x'"):
        create_model("timm:resnet18x", 5)


# --- parameters and weights ---------------------------------------------------------------


def test_count_parameters_counts_shared_once():
    linear = nn.Linear(3, 2)
    assert count_parameters(linear) == 3 * 2 + 2
    assert count_parameters(nn.Sequential(linear, linear)) == 8


def test_save_load_round_trip(tmp_path):
    source = _trained_copy("resnet8x4")
    path = tmp_path / "w.safetensors"
    save_weights(source, path)
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temporary file left
    x = torch.randn(2, 3, 32, 32)
    loaded = create_model("resnet8x4", 4, weights=path).eval()
    torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)
    fresh = create_model("resnet8x4", 4).eval()
    load_weights(fresh, str(path))
    torch.testing.assert_close(fresh(x), source(x), rtol=0, atol=0)
    assert weights_bytes(source) == weights_bytes(fresh) == path.stat().st_size


def test_save_overwrites_atomically(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(nn.Linear(2, 2), path)
    before = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save_weights(nn.Linear(2, 2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_save_creates_missing_directory(tmp_path):
    path = tmp_path / "new" / "w.safetensors"
    save_weights(nn.Linear(2, 2), path)
    load_weights(nn.Linear(2, 2), path)


def test_load_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_model("resnet8x4", 4, weights=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all" * 10])
def test_load_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="Cannot read weights file"):
        load_weights(nn.Linear(2, 2), path)


def test_load_truncated_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(nn.Linear(8, 8), path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelError, match="Cannot read weights file"):
        load_weights(nn.Linear(8, 8), path)


def test_load_other_architecture_names_keys(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(create_model("cifar_resnet20", 4), path)
    with pytest.raises(ModelError) as info:
        create_model("resnet8x4", 4, weights=path)
    message = str(info.value)
    assert "does not fit the model" in message
    assert "unexpected keys: layer1.1." in message
    assert (
        "shape mismatch: " in message
        and "conv1.weight (file (16, 3, 3, 3), model (32, 3, 3, 3))" in message
    )
    assert "more)" in message  # long listings are truncated


def test_load_wrong_num_classes(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(create_model("resnet8x4", 4), path)
    with pytest.raises(ModelError, match=r"fc.weight \(file \(4, 256\), model \(10, 256\)\)"):
        create_model("resnet8x4", 10, weights=path)


def test_load_missing_keys(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(nn.Linear(2, 2, bias=False), path)
    with pytest.raises(ModelError, match="missing keys: bias"):
        load_weights(nn.Linear(2, 2), path)
