import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from conftest import TinyCNN
from subdistill.errors import BasisError, ConfigError, ModelError
from subdistill.subspace.io import read_bases
from subdistill.training import distill

PAIRS = {"stage1": "stage1", "stage2": "stage2"}


def _data(n=48, seed=0):
    prototypes = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = prototypes[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=generator)
    return TensorDataset(x, y)


def _models():
    torch.manual_seed(0)
    return TinyCNN((6, 8)), TinyCNN((4, 4))


def _run(tmp_path, method="subdistill", **kw):
    teacher, student = _models()
    settings = dict(method=method, pairs=PAIRS, test=_data(24, 2), epochs=3, batch_size=8,
                    progress=False, run_dir=tmp_path)
    settings.update(kw)
    return teacher, student, distill(teacher, student, _data(), _data(24, 1), **settings)


def test_teacher_stays_frozen(tmp_path):
    teacher, _ = _models()
    teacher.train()  # the trainer must still not update its BatchNorm statistics
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = TinyCNN((4, 4))
    distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=2, batch_size=8,
            progress=False)
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert all(p.requires_grad and p.grad is None for p in teacher.parameters())


def test_run_directory_contents(tmp_path):
    _, student, result = _run(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "model_best.safetensors", "model_last.safetensors",
            "summary.json", "bases.safetensors"} <= names
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"loss/kd", "loss/layer/stage1", "loss/layer/stage2", "val_accuracy"} <= set(rows[0])
    saved = load_file(str(tmp_path / "model_best.safetensors"))
    assert set(saved) == set(student.state_dict())  # training-only heads are not saved
    for key, value in result.student.state_dict().items():
        torch.testing.assert_close(saved[key], value)  # the returned student is the best one
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_epoch"] == result.best_epoch
    assert result.best_val_accuracy == max(r["val_accuracy"] for r in rows)
    assert 0 <= result.test_accuracy <= 1 and result.teacher_test_accuracy is not None
    confusion = torch.tensor(summary["test_confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 24  # every test image counted
    assert confusion.trace() / 24 == pytest.approx(result.test_accuracy)
    per_class = summary["test_per_class_accuracy"]
    assert list(per_class) == ["0", "1", "2"]  # TensorDataset: no class names
    assert per_class["1"] == pytest.approx(confusion[1, 1] / confusion[1].sum())


def test_bases_fit_with_student_widths_and_reused(tmp_path):
    _run(tmp_path)
    bases, meta = read_bases(tmp_path / "bases.safetensors")
    assert {layer: b.U.shape for layer, b in bases.items()} == {"stage1": (6, 4), "stage2": (8, 4)}
    stamp = (tmp_path / "bases.safetensors").stat().st_mtime_ns
    _run(tmp_path, overwrite=True)  # a rerun replaces the run, its bases included
    assert (tmp_path / "bases.safetensors").stat().st_mtime_ns != stamp


def test_loaded_bases_give_the_run_fitted_ones_give(tmp_path):
    """The fit runs under a forked RNG: a run that loads the bases is bit for bit the run
    that fitted them."""
    _, _, fitted = _run(tmp_path / "fit")
    shared = str(tmp_path / "fit" / "bases.safetensors")
    stamp = Path(shared).stat().st_mtime_ns
    _, _, loaded = _run(tmp_path / "load", options={"bases_file": shared})
    assert Path(shared).stat().st_mtime_ns == stamp  # reused, not refitted
    assert [r["loss"] for r in fitted.history] == [r["loss"] for r in loaded.history]
    for (k, v), w in zip(fitted.student.state_dict().items(), loaded.student.state_dict().values()):
        assert torch.equal(v, w), k


def test_bases_fitted_on_other_images_are_refused(tmp_path):
    _run(tmp_path / "fit")
    shared = str(tmp_path / "fit" / "bases.safetensors")
    teacher, student = _models()
    with pytest.raises(BasisError, match="data: file has"):
        distill(teacher, student, _data(20, 7), _data(24, 1), pairs=PAIRS, epochs=1,
                batch_size=8, progress=False, options={"bases_file": shared})


def test_same_seed_same_result(tmp_path):
    _, _, first = _run(tmp_path / "a")
    _, _, second = _run(tmp_path / "b")
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]
    for (k, v), w in zip(first.student.state_dict().items(), second.student.state_dict().values()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("method", ["kd", "student-only"])
def test_output_methods_run(tmp_path, method):
    _, _, result = _run(tmp_path, method=method)
    assert len(result.history) == 3
    assert result.method.name == method


def test_training_improves_on_learnable_data(tmp_path):
    _, _, result = _run(tmp_path, method="student-only", epochs=8, lr=0.01)
    assert result.best_val_accuracy > 0.8


def test_errors(tmp_path):
    teacher, student = _models()
    wide = TinyCNN((4, 4), num_classes=5)
    with pytest.raises(ModelError, match="teacher outputs 5 logits"):
        distill(wide, student, _data(), _data(), pairs=PAIRS, epochs=1, progress=False)
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        distill(teacher, student, _data(), _data(), pairs=PAIRS, epoch=1)
    with pytest.raises(ConfigError, match="needs a teacher"):
        distill(None, student, _data(), _data(), method="kd")
    with pytest.raises(ConfigError, match="train.lr must be positive"):
        distill(teacher, student, _data(), _data(), pairs=PAIRS, lr=0.0)


def test_vit_teacher_tokens_are_distilled_into_a_cnn(tmp_path):
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    teacher = VisionTransformer(image_size=8, patch_size=2, num_layers=2, num_heads=2,
                                hidden_dim=12, mlp_dim=16, num_classes=3)
    torch.nn.init.normal_(teacher.heads.head.weight)  # torchvision initialises it to zeros
    student = TinyCNN((4, 4))
    result = distill(teacher, student, _data(), _data(24, 1), epochs=1, batch_size=8,
                     pairs={"encoder.layers.encoder_layer_0": "stage2"}, progress=False,
                     run_dir=tmp_path)
    pair = result.method.pairs[0]
    assert pair.teacher_size == (4, 4) and pair.teacher_channels == 12  # 16 patches, CLS dropped
    assert result.method.bases["encoder.layers.encoder_layer_0"].U.shape == (12, 4)
    # after the last block only the class token reaches the logits: patch tokens carry no
    # gradient, and the error says so instead of fitting a meaningless basis
    with pytest.raises(BasisError, match="class token"):
        distill(teacher, TinyCNN((4, 4)), _data(), _data(24, 1), epochs=1, progress=False,
                pairs={"encoder.layers.encoder_layer_1": "stage2"})


def test_non_finite_loss_stops_with_the_term_and_step(tmp_path):
    from subdistill.errors import NonFiniteError

    teacher, student = _models()
    with torch.no_grad():
        teacher.head.weight.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"kd.* at epoch 1, step 1"):
        distill(teacher, student, _data(), _data(24, 1), method="kd", epochs=1, progress=False)


def test_warmup_then_cosine_schedule():
    from subdistill.training.optim import schedule_factor

    factors = [schedule_factor("cosine", e, 6, 1, 0.5, warmup_epochs=2) for e in range(6)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert factors[2:] == sorted(factors[2:], reverse=True)
    assert schedule_factor("step", 5, 10, 2, 0.5, warmup_epochs=1) == pytest.approx(0.25)


def test_warmup_then_linear_schedule_is_triangular():
    from subdistill.training.optim import schedule_factor

    factors = [schedule_factor("linear", e, 6, 1, 0.5, warmup_epochs=2) for e in range(6)]
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25])


def test_bf16_channels_last_training_runs(tmp_path):
    _, _, result = _run(tmp_path, method="fitnet", precision="bf16", channels_last=True,
                        epochs=2)
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert 0.0 <= result.test_accuracy <= 1.0


@pytest.mark.parametrize("bad", [{"precision": "fp16"}, {"warmup_epochs": 3, "epochs": 3},
                                 {"cache_copies": 0}])
def test_training_option_errors(bad):
    from subdistill.training import TrainConfig

    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_validation_epochs_are_evenly_spaced_and_end_with_the_last():
    from subdistill.training.config import validation_epochs

    assert validation_epochs(5, 0) == {1, 2, 3, 4, 5}
    assert validation_epochs(100, 4) == {25, 50, 75, 100}
    assert validation_epochs(10, 3) == {3, 7, 10}
    assert validation_epochs(3, 8) == {1, 2, 3}


def test_fewer_validations_keep_the_best_validated_epoch(tmp_path):
    _, _, result = _run(tmp_path, method="kd", epochs=4, evaluations=2)
    validated = [row["epoch"] for row in result.history if "val_accuracy" in row]
    assert validated == [2, 4]
    assert result.best_epoch in (2, 4)


def test_run_fingerprint_ignores_defaults_and_resumable_options():
    from dataclasses import asdict

    from subdistill.training import TrainConfig
    from subdistill.training.config import run_fingerprint

    base = {"method": "kd", "train": asdict(TrainConfig(epochs=7))}
    older = {"method": "kd", "train": {"epochs": 7, "lr": 1e-3}}  # a version with fewer options
    assert run_fingerprint(base) == run_fingerprint(older)
    assert run_fingerprint(base) == run_fingerprint(
        {"method": "kd", "train": asdict(TrainConfig(epochs=7, progress=False))})
    assert run_fingerprint(base) != run_fingerprint(
        {"method": "kd", "train": asdict(TrainConfig(epochs=8))})


def test_a_run_logged_to_a_file_gives_one_plain_line_per_epoch(capsys, caplog):
    # stderr is not a terminal here: no progress bars (no \r, no escape codes), one line
    # per epoch, with or without progress: true
    import logging

    from conftest import TinyCNN
    from subdistill.training import distill
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 8, 8), torch.arange(32) % 3)
    with caplog.at_level(logging.INFO, logger="subdistill"):
        distill(None, TinyCNN((4, 4)), data, data, method="student-only", epochs=4,
                batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
    assert len(lines) == 4 and lines[0].startswith("student-only epoch 1/4: loss ")
    assert all("val accuracy" in line for line in lines)


def test_test_curve_scores_the_test_split_on_validated_epochs_only(tmp_path):
    _, _, result = _run(tmp_path, method="kd", epochs=4, evaluations=2, test_curve=True)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [("val_accuracy" in r, "test_accuracy" in r) for r in rows] == [
        (False, False), (True, True), (False, False), (True, True)]
    best = next(r for r in rows if r["epoch"] == result.best_epoch)
    assert best["test_accuracy"] == pytest.approx(result.test_accuracy)  # same weights, same set
    _run(tmp_path / "plain", method="kd", epochs=2)
    plain = (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert "test_accuracy" not in plain
