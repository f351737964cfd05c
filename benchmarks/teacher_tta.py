"""Benchmark of a trained teacher's test accuracy with and without flip test-time augmentation
(the logits of each test image averaged with those of its mirror image), in one process.

The teacher is built from its training config and a weights file; every test image of the
config's dataset is scored both ways (bf16 autocast as in training, or fp32).

    python benchmarks/teacher_tta.py configs/teacher-cifar10-wide.yaml \\
        weights/cifar10-fastcnn.safetensors --out benchmarks/results/teacher_tta.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.config import TeacherConfig, load_config  # noqa: E402
from subdistill.data import load_dataset  # noqa: E402
from subdistill.jobs import build_model  # noqa: E402
from subdistill.training.evaluate import accuracy  # noqa: E402
from subspace_fit import RESULTS, machine_info, report  # noqa: E402


class FlipAveraged(nn.Module):
    """``model``'s logits averaged over the image and its horizontal mirror."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * (self.model(x) + self.model(x.flip(-1)))


def measure(config_path: str, weights: str, precision: str) -> dict:
    """Test accuracy of the teacher of ``config_path`` loaded from ``weights``, plain and with
    flip averaging, with the seconds each took."""
    config = load_config(config_path, cls=TeacherConfig)
    data = config.data
    test = load_dataset(data.dataset, "test", data.root, data.download, **data.options)
    config.model.weights = str(Path(weights).resolve())
    model = build_model(config.model, len(test.classes), test.image_shape[0]).eval()
    rows = {}
    for name, scored in (("plain", model), ("flip", FlipAveraged(model))):
        started = time.perf_counter()
        rows[name] = {"test_accuracy": accuracy(scored, test, batch_size=500,
                                                precision=precision),
                      "seconds": time.perf_counter() - started}
    return {"config": config_path, "weights": weights, "images": len(test),
            "precision": precision, "results": rows, "machine": machine_info()}


def format_result(result: dict) -> str:
    lines = ["| evaluation | test accuracy | seconds |", "|---|---:|---:|"]
    lines += [f"| {name} | {row['test_accuracy']:.4f} | {row['seconds']:.1f} |"
              for name, row in result["results"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("weights")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "teacher_tta.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report(measure(args.config, args.weights, args.precision), args.out, True, format_result)


if __name__ == "__main__":
    main()
