"""Model zoo: CIFAR ResNets, a fast-training VGG-style CNN, a MobileNet-like student,
torchvision and timm models by name."""

from subdistill.models import timm_models, torchvision_models  # noqa: F401  (register models)
from subdistill.models.cifar_resnet import BasicBlock, CifarResNet, cifar_resnet
from subdistill.models.fast_cnn import FastCNN, fast_cnn
from subdistill.models.inspect import LayerInfo, format_layer_table, layer_shapes
from subdistill.models.mobile import InvertedResidual, MobileStudent, mobile_student
from subdistill.models.registry import (
    ModelFactory,
    count_parameters,
    create_model,
    list_models,
    load_weights,
    register_model,
    register_prefix,
    reject_pretrained,
    save_weights,
    weights_bytes,
)
from subdistill.models.restricted import RestrictedTeacher, restrict_teacher

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "FastCNN",
    "InvertedResidual",
    "LayerInfo",
    "MobileStudent",
    "RestrictedTeacher",
    "ModelFactory",
    "cifar_resnet",
    "fast_cnn",
    "count_parameters",
    "create_model",
    "format_layer_table",
    "layer_shapes",
    "list_models",
    "load_weights",
    "mobile_student",
    "register_model",
    "register_prefix",
    "reject_pretrained",
    "restrict_teacher",
    "save_weights",
    "weights_bytes",
]
