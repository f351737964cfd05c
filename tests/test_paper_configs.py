"""The paper-scale configs in configs/paper/ run end to end: here on a CPU, with random weights
(``pretrained=false``, no weights file) and tiny generated data in the formats the configs expect
(a torchvision ``cifar-100-python`` folder; ImageNet-style train/val ImageFolder trees with 1000
WordNet-id-like class folders). They test plumbing (data layout, subtask presets, model names,
layer paths, shapes, run directories), not accuracy.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from torchvision.models import VisionTransformer

from subdistill import jobs
from subdistill.cli import main
from subdistill.config import TeacherConfig, load_config
from subdistill.data import imagenet_class_names, load_dataset
from subdistill.data.cifar import CIFAR100_CLASSES, CIFAR100_SUPERCLASSES
from subdistill.data.subtask import PRESETS, Subtask
from subdistill.errors import BasisError
from subdistill.jobs import run_distill
from subdistill.models.restricted import restrict_teacher
from subdistill.models.torchvision_models import weight_set
from subdistill.subspace.fit import fit_subspaces

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
RETRIEVER = PRESETS.get("imagenet")["retriever"]  # (205, ..., 209), the ImageNet configs' subtask

# Every test runs on a CPU, quietly, for one epoch.
CPU = ["train.device=cpu", "train.progress=false", "train.epochs=1", "train.num_workers=0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are big enough for torch to parallelise, and on a
    machine whose cores are busy two spinning threads make them far slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- generated data ---------------------------------------------------------------------------

def _write_cifar100(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> None:
    """A ``cifar-100-python`` folder (train/test/meta pickles as torchvision reads them) with
    random 32x32 images, ``train_per_class``/``test_per_class`` per fine class."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    coarse_names = list(CIFAR100_SUPERCLASSES)
    coarse_of = {fine: coarse_names.index(sc)
                 for sc, fines in CIFAR100_SUPERCLASSES.items() for fine in fines}
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = np.repeat(np.arange(100), per_class)
        entry = {
            "batch_label": f"{split} batch",
            "filenames": [f"{split}_{i:05d}.png" for i in range(len(fine))],
            "data": rng.integers(0, 256, (len(fine), 3 * 32 * 32), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": [coarse_of[CIFAR100_CLASSES[f]] for f in fine],
        }
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": list(CIFAR100_CLASSES),
                     "coarse_label_names": coarse_names}, f)


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar100")
    _write_cifar100(root)
    return root


@pytest.fixture
def cifar100_unchecked(monkeypatch):
    """torchvision checks the MD5 sums of the real CIFAR-100 files; the generated ones have the
    same format but other contents."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)


def _wnid(index: int) -> str:
    """A WordNet-id-like folder name whose sorted position is ``index``."""
    return f"n{index:08d}"


def _write_imagenet(root: Path) -> None:
    """``root/train`` and ``root/val`` ImageFolder trees with 1000 class folders n######## (what
    the loader recognises as ImageNet): 3 training and 1 validation JPEG of random pixels (80x60,
    not square) for each subtask class, and one shared filler image (hard-linked) elsewhere."""
    rng = np.random.default_rng(0)

    def image(path: Path) -> None:
        pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)

    filler = root / "filler.jpg"
    root.mkdir(parents=True, exist_ok=True)
    image(filler)
    for split, per_class in (("train", 3), ("val", 1)):
        for c in range(1000):
            folder = root / split / _wnid(c)
            folder.mkdir(parents=True)
            if c in RETRIEVER:
                for i in range(per_class):
                    image(folder / f"{_wnid(c)}_{i}.JPEG")
            else:
                target = folder / f"{_wnid(c)}_0.JPEG"
                try:
                    os.link(filler, target)
                except OSError:
                    shutil.copyfile(filler, target)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    _write_imagenet(root)
    return root


def _imagenet_at(root: Path, size: int):
    """The ImageFolder training and test sets read at ``size`` px instead of 224 (the loader's
    options; the configs use its defaults, resize 256 and crop 224)."""
    return tuple(load_dataset("imagefolder", split, root, resize=size, image_size=size)
                 for split in ("train", "test"))


def _shapes(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("pair ")]


def _check_run(run_dir: Path, result, pairs: dict[str, tuple[int, int]]) -> None:
    """The run wrote its files; each pair has the basis (d, k) shape expected."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "subdistill" and summary["epochs"] == 1
    for name in ("config.yaml", "metrics.jsonl", "model_best.safetensors",
                 "model_last.safetensors", "bases.safetensors", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    assert result.best_epoch == 1 and result.test_accuracy is not None
    assert {p.teacher: (p.teacher_channels, p.student_channels)
            for p in result.method.pairs} == pairs
    assert {layer: tuple(basis.U.shape) for layer, basis in result.method.bases.items()} == pairs


# --- what the configs say ----------------------------------------------------------------------

@pytest.mark.parametrize("name, augment, subtask, teacher", [
    ("cifar100-superclass-subdistill.yaml", "crop-flip", "vehicles_1", "cifar_resnet18"),
    ("imagenet-resnet101-mobilenetv4.yaml", "flip", "retriever", "resnet101"),
    ("imagenet-vitb16-efficientformerv2.yaml", "flip", "retriever", "vit_b_16"),
])
def test_configs_hold_the_reference_schedule(name, augment, subtask, teacher):
    """As written (before any test override): the paper's schedule, lambda, method, on CUDA."""
    raw = yaml.safe_load((PAPER / name).read_text())
    assert raw["train"]["device"] == "cuda"
    config = load_config(PAPER / name, ["train.device=cpu"])  # no CUDA needed to validate
    t = config.train
    assert (t.epochs, t.optimizer, t.lr, t.weight_decay, t.schedule, t.step_size, t.gamma,
            t.batch_size, t.augment) == (100, "adamw", 1e-3, 0.0, "step", 25, 0.5, 32, augment)
    assert config.method == {"name": "subdistill", "lambda": 100.0, "calibration": "none",
                             "temperature": 4.0, "basis": "subdistill",
                             "normalization": "standardize", "scale": "none", "positions": 20}
    assert (config.data.subtask, config.data.rho, config.data.val_fraction) == (subtask, 0.8, 0.2)
    if augment == "flip":  # ImageNet: RandomResizedCrop from the whole image, when read
        assert config.data.options == {"train_crop": "random-resized"}
    assert config.teacher.name == teacher
    # the torchvision teachers: their original ImageNet weights by name (ResNet-101's DEFAULT,
    # IMAGENET1K_V2, is a later 81.9 % recipe, not the paper's 77.4 % teacher)
    assert config.teacher.pretrained == (False if teacher == "cifar_resnet18" else "IMAGENET1K_V1")
    assert (config.teacher.weights is None) == bool(config.teacher.pretrained)
    if teacher == "resnet101":  # torchvision's metadata, no download
        weights = weight_set(teacher, config.teacher.pretrained)
        assert weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] == pytest.approx(77.374)
    assert len(config.pairs) == 4


# --- CIFAR-100: teacher, then a superclass subtask ---------------------------------------------

def test_cifar100_teacher_then_superclass_subdistill(cifar100_root, cifar100_unchecked, tmp_path,
                                                     capsys):
    """`subdistill train-teacher` and `subdistill distill` with the two CIFAR-100 configs: the
    teacher's weights file is the one the distillation config loads."""
    teacher_config = PAPER / "teacher-cifar100.yaml"
    distill_config = PAPER / "cifar100-superclass-subdistill.yaml"
    teacher_run = tmp_path / "teacher"
    # two training images per class: half for training, half for validation
    data = [f"data.root={cifar100_root}", "data.val_fraction=0.5"]
    teacher_overrides = [*CPU, *data, "data.download=false", "train.batch_size=100",
                         f"run_dir={teacher_run}"]
    config = load_config(teacher_config, teacher_overrides, cls=TeacherConfig)
    assert (config.model.name, config.data.dataset, config.train.epochs) == (
        "cifar_resnet18", "cifar100", 1)
    assert main(["train-teacher", str(teacher_config),
                 *[a for o in teacher_overrides for a in ("--set", o)]]) == 0
    weights = teacher_run / "model_best.safetensors"
    assert weights.is_file()

    run = tmp_path / "distill"
    overrides = [*CPU, *data, "data.rho=0.5", f"teacher.weights={weights}", "train.batch_size=5",
                 "method.positions=4", f"run_dir={run}"]
    assert main(["check", str(distill_config), *[a for o in overrides for a in ("--set", o)]]) == 0
    report = capsys.readouterr().out
    assert "subtask vehicles_1: bicycle, bus, motorcycle, pickup_truck, train" in report
    assert _shapes(report) == [
        "pair layer1 (64x32x32) -> layer1 (32x32x32), compared at 32x32",
        "pair layer2 (128x16x16) -> layer2 (64x16x16), compared at 16x16",
        "pair layer3 (256x8x8) -> layer3 (128x8x8), compared at 8x8",
        "pair layer4 (512x4x4) -> layer4 (256x4x4), compared at 4x4",
    ]
    result = run_distill(load_config(distill_config, overrides))
    _check_run(run, result, {"layer1": (64, 32), "layer2": (128, 64), "layer3": (256, 128),
                             "layer4": (512, 256)})
    assert len(result.method.pairs) == 4 and result.student.fc.out_features == 5


# --- ImageNet: ResNet-101 -> MobileNetV4-small -------------------------------------------------

RESNET_CONFIG = PAPER / "imagenet-resnet101-mobilenetv4.yaml"
RESNET_PAIRS = {"layer1": (256, 64), "layer2": (512, 96), "layer3": (1024, 128),
                "layer4": (2048, 128)}


def test_imagenet_layout_resolves_the_preset(imagenet_root):
    """1000 WordNet-id folders make the tree an ImageNet one, so the ImageNet presets apply
    and the classes get their ImageNet names."""
    config = load_config(RESNET_CONFIG, ["train.device=cpu", f"data.root={imagenet_root}"])
    data = jobs.load_task_data(config.data)
    assert data.train_full.family == "imagenet" and len(data.train_full.classes) == 1000
    assert data.subtask.classes == RETRIEVER
    assert data.subtask.names == tuple(imagenet_class_names()[c] for c in RETRIEVER)
    assert (len(data.splits.train), len(data.splits.val), len(data.splits.test)) == (10, 5, 5)
    image, label = data.splits.train[0]
    assert image.shape == (3, 224, 224) and 0 <= label < 5


def _checked_pairs(config, imagenet_root, capsys):
    """The pair lines `subdistill check` prints for an ImageNet config on CPU, random weights."""
    overrides = ["train.device=cpu", "teacher.pretrained=false", f"data.root={imagenet_root}"]
    assert main(["check", str(config), *[a for o in overrides for a in ("--set", o)]]) == 0
    return _shapes(capsys.readouterr().out)


def test_imagenet_resnet101_mobilenetv4_check_at_224(imagenet_root, capsys):
    """`subdistill check` with the config's models at the paper's 224 px: the paper's k."""
    assert _checked_pairs(RESNET_CONFIG, imagenet_root, capsys) == [
        "pair layer1 (256x56x56) -> blocks.1.1 (64x28x28), compared at 28x28",
        "pair layer2 (512x28x28) -> blocks.2.3 (96x14x14), compared at 14x14",
        "pair layer3 (1024x14x14) -> blocks.3.1 (128x7x7), compared at 7x7",
        "pair layer4 (2048x7x7) -> blocks.3.5 (128x7x7), compared at 7x7",
    ]


def test_imagenet_resnet101_mobilenetv4_distils(imagenet_root, tmp_path):
    """One epoch of the config on 64 px images (both models are fully convolutional)."""
    run = tmp_path / "run"
    config = load_config(RESNET_CONFIG, [
        *CPU, "teacher.pretrained=false", f"data.root={imagenet_root}", "train.batch_size=5",
        "train.eval_batch_size=10", "method.positions=4", f"run_dir={run}"])
    assert config.teacher.pretrained is False and config.teacher.weights is None
    result = run_distill(config, full=_imagenet_at(imagenet_root, 64))
    _check_run(run, result, RESNET_PAIRS)
    assert result.student.classifier.out_features == 5


# --- ImageNet: ViT-B/16 -> EfficientFormerV2-S0 ------------------------------------------------

VIT_CONFIG = PAPER / "imagenet-vitb16-efficientformerv2.yaml"
VIT_PAIRS = {f"encoder.layers.encoder_layer_{i}": (768, k)
             for i, k in ((2, 32), (5, 48), (8, 96), (10, 176))}


def _random_vit_head(model: nn.Module) -> nn.Module:
    """torchvision initialises the ViT's classifier to zeros, so a randomly initialised ViT has
    constant logits and no logit gradient anywhere; the pretrained weights do not."""
    head = getattr(getattr(model, "heads", None), "head", None)
    if isinstance(head, nn.Linear) and not head.weight.any():
        torch.manual_seed(0)
        nn.init.normal_(head.weight, std=0.02)
    return model


@pytest.fixture
def random_vit_head(monkeypatch):
    build = jobs.build_model
    monkeypatch.setattr(jobs, "build_model",
                        lambda *args, **kwargs: _random_vit_head(build(*args, **kwargs)))


def test_imagenet_vitb16_efficientformerv2_check_at_224(imagenet_root, capsys):
    """`subdistill check` with the config's models at 224 px: 14x14 patch tokens, the paper's k."""
    assert _checked_pairs(VIT_CONFIG, imagenet_root, capsys) == [
        "pair encoder.layers.encoder_layer_2 (768x14x14) -> stages.0 (32x56x56), compared at 14x14",
        "pair encoder.layers.encoder_layer_5 (768x14x14) -> stages.1 (48x28x28), compared at 14x14",
        "pair encoder.layers.encoder_layer_8 (768x14x14) -> stages.2 (96x14x14), compared at 14x14",
        "pair encoder.layers.encoder_layer_10 (768x14x14) -> stages.3 (176x7x7), compared at 7x7",
    ]


def test_imagenet_vitb16_efficientformerv2_distils(imagenet_root, random_vit_head, tmp_path):
    """One epoch of the config on 64 px images: the ViT built for 64 px (4x4 patches) and
    EfficientFormerV2 for 64 px (its attention biases depend on the input size)."""
    run = tmp_path / "run"
    config = load_config(VIT_CONFIG, [
        *CPU, "teacher.pretrained=false", "teacher.args.image_size=64",
        "student.args.img_size=64", f"data.root={imagenet_root}", "train.batch_size=5",
        "train.eval_batch_size=10", "method.positions=4", f"run_dir={run}"])
    result = run_distill(config, full=_imagenet_at(imagenet_root, 64))
    _check_run(run, result, VIT_PAIRS)
    assert result.student.head.out_features == 5


def test_last_vit_block_is_refused():
    """Why the config pairs block 10 and not the paper's block 11: only the class token of a
    torchvision ViT's last block reaches the head, so the logits do not depend on that block's
    patch tokens and SubDistill has no gradient to work with there (a 3-block ViT here)."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16,
                            mlp_dim=32, num_classes=1000)
    teacher = restrict_teacher(_random_vit_head(vit).eval(), Subtask(RETRIEVER, tuple("abcde")))
    images = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))]
    before_last = "encoder.layers.encoder_layer_1"
    assert fit_subspaces(teacher, images, {before_last: 8})[before_last].k == 8
    with pytest.raises(BasisError, match="encoder_layer_2.*constant"):
        fit_subspaces(teacher, images, {"encoder.layers.encoder_layer_2": 8})
