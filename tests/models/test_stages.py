import pytest
import torch

from subdistill.models import create_model
from subdistill.models.stages import auto_pairs, stage_outputs

X32, X224 = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 224, 224)


@pytest.mark.parametrize("name, args, x, stages", [
    ("cifar_resnet", {"depth": 8}, X32, ["layer1", "layer2", "layer3"]),
    ("cifar_resnet", {"blocks_per_stage": [2, 2, 2, 2], "widths": [32, 64, 128, 256]}, X32,
     ["layer1", "layer2", "layer3", "layer4"]),
    ("mobile_student", {}, X32, ["stages.0", "stages.1", "stages.2"]),
    ("resnet18", {}, X224, ["layer1", "layer2", "layer3", "layer4"]),
    ("vit_b_16", {}, X224, [f"encoder.layers.encoder_layer_{i}" for i in range(11)]),
])
def test_stage_outputs(name, args, x, stages):
    assert stage_outputs(create_model(name, 10, **args), x) == stages


def test_auto_pairs_match_relative_depths():
    teacher = create_model("cifar_resnet", 10, blocks_per_stage=[2, 2, 2, 2],
                           widths=[32, 64, 128, 256])
    student = create_model("cifar_resnet", 4, blocks_per_stage=[1, 1, 1, 1], widths=[8, 16, 32, 64])
    assert auto_pairs(teacher, student, X32) == {"layer2": "layer2", "layer3": "layer3",
                                                 "layer4": "layer4"}
    assert auto_pairs(create_model("vit_b_16", 10), create_model("resnet18", 4), X224) == {
        "encoder.layers.encoder_layer_5": "layer2", "encoder.layers.encoder_layer_7": "layer3",
        "encoder.layers.encoder_layer_10": "layer4"}
