"""The layer weights shared by every layer-wise method: calibrated ratios or published raw weights."""

import pytest
import torch
from method_helpers import layer_step

from subdistill.errors import ConfigError
from subdistill.methods import LayerPair, build_method, describe_methods
from subdistill.methods.layerwise import LayerwiseMethod, calibrated_weights

PAIR = LayerPair("t", "s", 6, 3, (4, 4), (2, 2))
PUBLISHED = {"at": 1000.0, "spkd": 3000.0, "fitnet": 100.0, "vid": 1.0, "vkd": 100.0,
             "subdistill": 100.0}
PARAMETER_FREE = ["at", "spkd", "fitnet", "vid", "vkd"]  # no fitted basis needed


def test_every_layerwise_method_has_a_published_weight():
    layerwise = {n for n, c in describe_methods().items() if issubclass(c, LayerwiseMethod)}
    assert layerwise == set(PUBLISHED)
    for name, weight in PUBLISHED.items():
        method = build_method(name, [PAIR], calibration="none")
        assert method.options["lambda"] == weight and method.layer_weights == [weight]
        method.set_calibration([2.0], [0.5])  # measured norms do not move a raw weight
        assert method.layer_weights == [weight]


def test_default_is_a_calibrated_ratio_of_one():
    method = build_method("at", [PAIR])
    assert method.options["calibration"] == "gradient" and method.options["lambda"] == 1.0
    assert method.layer_weights == [1.0]  # the ratio itself until the trainer calibrates
    method.set_calibration([2.0], [0.5])
    assert method.layer_weights == [4.0]


def test_calibrated_weights_formula():
    assert calibrated_weights(3.0, [2.0, 1.0], [4.0, 0.25]) == [1.5, 12.0]
    assert calibrated_weights(3.0, [2.0], [0.0]) == [3.0]  # no gradient: the ratio itself
    assert calibrated_weights(3.0, [0.0], [1.0]) == [3.0]


def test_calibration_none_keeps_an_explicit_lambda():
    method = build_method("at", [PAIR], calibration="none", **{"lambda": 100.0})
    method.set_calibration([2.0], [0.5])
    assert method.layer_weights == [100.0]


@pytest.mark.parametrize("name", PARAMETER_FREE)
def test_lambda_100_uncalibrated_weights_the_raw_term_exactly(name):
    """``lambda: 100, calibration: none``: the layer term is exactly 100 × the loss (the old
    behaviour, bit for bit)."""
    torch.manual_seed(0)
    method = build_method(name, [PAIR], calibration="none", **{"lambda": 100.0})
    t_map, s_map = torch.randn(4, 6, 4, 4), torch.randn(4, 3, 2, 2)
    terms = method(layer_step(t_map, s_map))
    assert torch.equal(terms["layer/t"], 100.0 * method.layer_loss(0, t_map, s_map))


def test_weights_travel_with_the_state_dict():
    method = build_method("spkd", [PAIR])
    method.set_calibration([5.0], [0.1])
    other = build_method("spkd", [PAIR])
    other.load_state_dict(method.state_dict())
    assert other.layer_weights == pytest.approx([50.0])


@pytest.mark.parametrize("options, match", [
    ({"calibration": "loss"}, "calibration must be one of"),
    ({"lambda": -1.0}, "lambda must be a finite number in"),
    ({"lambda": float("nan")}, "lambda must be a finite number in"),
    ({"temperature": 0.0}, "temperature must be a finite number in \\(0"),
    ({"temperature": float("inf")}, "temperature must be a finite number in \\(0"),
])
def test_bad_weights_are_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("at", [PAIR], **options)
