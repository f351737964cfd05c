"""The committed benchmark teachers: their weights load into the configs' architecture and
score what their training record says, re-measured on real test images."""

import json
from pathlib import Path

import pytest
from torch.utils.data import Subset

from subdistill.config import TeacherConfig, load_config
from subdistill.data import load_dataset
from subdistill.jobs import build_model
from subdistill.models import count_parameters
from subdistill.training.evaluate import accuracy

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEACHERS = [  # (config, weights, dataset, floor of the recorded test accuracy)
    ("teacher-fashion-mnist.yaml", "fashion-mnist-resnet10", "fashion-mnist", 0.93),
    # the benchmarks' CIFAR-10 teacher since 2026-12-02: 0.9108 (issue 14 asks 0.93; see
    # weights/README.md for why this data and CPU budget stop short of it)
    ("teacher-cifar10-wide.yaml", "cifar10-fastcnn", "cifar10-jpeg", 0.91),
    # the earlier CIFAR-10 teacher, kept for the 2026-11-25 tables: 0.8972
    ("teacher-cifar10-restart.yaml", "cifar10-resnet18", "cifar10-jpeg", 0.89),
]


@pytest.mark.parametrize("config_name, name, dataset, required", TEACHERS)
def test_committed_teacher_scores_its_record(config_name, name, dataset, required):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    config = load_config(ROOT / "configs" / config_name, cls=TeacherConfig)
    record = json.loads((ROOT / "weights" / name / "summary.json").read_text())
    assert record["test_accuracy"] >= required
    test = load_dataset(dataset, "test", root=SHARED_DATA)
    config.model.weights = str(ROOT / "weights" / f"{name}.safetensors")
    model = build_model(config.model, len(test.classes), test.image_shape[0])
    assert count_parameters(model) >= 1_000_000
    every_tenth = Subset(test, range(0, len(test), 10))  # 1000 images, 100 per class
    measured = accuracy(model, every_tenth, batch_size=500)
    assert measured == pytest.approx(record["test_accuracy"], abs=0.02)
