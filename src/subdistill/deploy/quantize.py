"""Post-training int8 quantisation of an exported ONNX student, with onnxruntime's static
quantisation (QDQ format, int8 weights per channel and int8 activations), calibrated on the
subtask's training images. onnxruntime is chosen over torch's PT2E flow because the quantised
model is the one a device runs: the same runtime calibrates, quantises and executes it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_path
from .expert import ExpertSpec, sample_images

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 256
ACCURACY_LOSS_WARNING = 0.01
"""A quantised model losing more than this (1 point) of test accuracy is reported loudly."""


def int8_path(onnx_path: Path) -> Path:
    """Where the int8 model of ``expert.onnx`` goes: ``expert.int8.onnx``."""
    return onnx_path.with_name(onnx_path.stem + ".int8" + onnx_path.suffix)


def quantize_int8(spec: ExpertSpec, onnx_path: Path, test_images: int = 1000) -> dict[str, Any]:
    """Quantise ``onnx_path`` into :func:`int8_path`; the accuracies of both on up to
    ``test_images`` test images of the subtask (when its data is here) and the file sizes."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calibration = sample_images(spec, "train", CALIBRATION_IMAGES)
    images = calibration[0] if calibration is not None else torch.rand(
        CALIBRATION_IMAGES, *spec.input_shape, generator=torch.Generator().manual_seed(0))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images.split(32))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = int8_path(onnx_path)
    with atomic_path(target) as tmp, tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))  # shape inference, graph clean-up
        quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8)
    record: dict[str, Any] = {"file": target.name, "calibration_images": len(images),
                              "fp32_bytes": onnx_path.stat().st_size,
                              "int8_bytes": target.stat().st_size}
    test = sample_images(spec, "test", test_images)
    if test is not None:
        from .export import load_exported

        record.update(test_images=len(test[1]),
                      fp32_accuracy=onnx_accuracy(load_exported(onnx_path, "onnx"), *test),
                      int8_accuracy=onnx_accuracy(load_exported(target, "onnx"), *test))
        loss = record["fp32_accuracy"] - record["int8_accuracy"]
        if loss > ACCURACY_LOSS_WARNING:
            log.warning("INT8 QUANTISATION COSTS %.1f POINTS OF TEST ACCURACY (%.4f -> %.4f): "
                        "keep the fp32 model, or calibrate on more images", 100 * loss,
                        record["fp32_accuracy"], record["int8_accuracy"])
    return record


def onnx_accuracy(run: Any, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of an exported model's callable on ``images``."""
    with torch.no_grad():
        predicted = torch.cat([run(x.contiguous()).argmax(1) for x in images.split(batch_size)])
    return float((predicted == labels).float().mean())
