"""Calibrated layer weights and the balance warnings of the trainer."""

import logging

import pytest
import torch
from test_trainer import PAIRS, _data
from torch import nn

from conftest import TinyCNN
from subdistill.methods import LayerPair, StepOutputs, build_method
from subdistill.taps import LayerTaps
from subdistill.training import distill
from subdistill.training.calibration import calibrate, collapse_message, imbalance_message

FITNET_PAIR = LayerPair("t", "stage2", 5, 8, (4, 4), (4, 4))


def _fitnet_setup(scale):
    """A FitNet method on a fixed teacher map multiplied by ``scale``, with its regressor's
    weight and bias multiplied by the same ``scale`` (so the layer term is scale² × the
    unscaled one, exactly), a student and its calibration batches."""
    torch.manual_seed(0)
    student = TinyCNN((6, 8))
    method = build_method("fitnet", [FITNET_PAIR])
    with torch.no_grad():
        for p in method.regressors[0].parameters():
            p.mul_(scale)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 8, 8, generator=generator), torch.arange(8) % 3)
               for _ in range(2)]
    teacher = {id(x): (torch.randn(8, 3, generator=generator),
                       scale * torch.randn(8, 5, 4, 4, generator=generator)) for x, _ in batches}
    taps = LayerTaps(student, ["stage2"]).__enter__()

    def outputs(x, y):
        logits_t, map_t = teacher[id(x)]
        logits = student(x)
        return StepOutputs(logits, y, logits_t, dict(taps.outputs), {"t": map_t})

    return method, student, outputs, batches


def test_calibration_on_a_rescaled_layer_gives_the_same_effective_weights():
    weighted = {}
    for scale in (1.0, 100.0):
        method, student, outputs, batches = _fitnet_setup(scale)
        norms = calibrate(method, student, outputs, batches)
        layer, kd = norms["layer/t"]
        weighted[scale] = (method.layer_weights[0], method.layer_weights[0] * layer, kd)
    (w1, g1, kd1), (w100, g100, kd100) = weighted[1.0], weighted[100.0]
    assert w100 == pytest.approx(w1 / 100**2, rel=1e-6)  # the raw weight absorbs the scale
    assert g100 == pytest.approx(g1, rel=1e-6)  # the weighted term pulls exactly as hard
    assert g1 == pytest.approx(kd1, rel=1e-6)  # λ = 1: as hard as the KD term
    assert kd100 == pytest.approx(kd1, rel=1e-6)  # the KD gradient does not see the scale


def test_calibration_leaves_models_and_random_state_as_they_were():
    method, student, outputs, batches = _fitnet_setup(1.0)
    student.train()
    before = [{k: v.clone() for k, v in m.state_dict().items() if torch.is_tensor(v)}
              for m in (student, method)]
    rng = torch.get_rng_state()
    calibrate(method, student, outputs, batches)
    for module, state in zip((student, method), before):
        for key, value in state.items():
            assert torch.equal(module.state_dict()[key], value), key
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in student.parameters())


def test_imbalance_message_names_the_terms_out_of_balance():
    assert imbalance_message({"layer/a": 50.0, "layer/b": 0.02}) is None
    message = imbalance_message({"layer/a": 500.0, "layer/b": 0.001, "layer/c": 1.0})
    assert "layer/a (500x" in message and "drowns the KD term" in message
    assert "layer/b (0.001x" in message and "switched off" in message
    assert "layer/c" not in message


def _history(accuracies, layer_terms):
    return [{"train_accuracy": a, "loss/kd": 1.0, "loss/layer/x": t}
            for a, t in zip(accuracies, layer_terms)]


def test_collapse_message():
    falling = [10.0, 5.0, 2.0]
    assert "at chance (3 classes)" in collapse_message(_history([0.3, 0.35, 0.36], falling), 3, 4)
    assert collapse_message(_history([0.3, 0.35], falling[:2]), 3, 4) is None  # too early
    assert collapse_message(_history([0.3, 0.35, 0.36], falling), 3, 40) is None  # 3 of 40
    assert collapse_message(_history([0.3] * 10, [10.0] * 9 + [2.0]), 3, 40) is not None
    assert collapse_message(_history([0.3, 0.5, 0.7], falling), 3, 4) is None  # learning
    assert collapse_message(_history([0.3, 0.35, 0.36], [10.0, 10.0, 9.5]), 3, 4) is None
    assert collapse_message([{"train_accuracy": 0.3, "loss/ce": 1.0}] * 3, 3, 4) is None


class _Scaled(nn.Module):
    """``factor · module(x)`` (or ``module(factor · x)`` with ``inputs=True``)."""

    def __init__(self, module, factor, inputs=False):
        super().__init__()
        self.module, self.factor, self.inputs = module, factor, inputs

    def forward(self, x):
        return self.module(self.factor * x) if self.inputs else self.factor * self.module(x)


def test_subdistill_weights_are_the_same_on_a_teacher_with_a_rescaled_layer(tmp_path):
    """A teacher whose stage-1 output is 100× larger (stage 2 compensating, same predictions):
    the fitted basis, the loss and therefore the calibrated weights do not change."""
    weights = []
    for factor in (1.0, 100.0):
        torch.manual_seed(0)
        teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
        teacher.stage1 = _Scaled(teacher.stage1, factor)
        teacher.stage2 = _Scaled(teacher.stage2, 1 / factor, inputs=True)
        result = distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=1,
                         batch_size=8, progress=False, run_dir=tmp_path / f"x{factor:g}")
        weights.append(result.method.layer_weights)
    assert weights[1] == pytest.approx(weights[0], rel=1e-6)


def test_a_collapsed_setting_triggers_the_warnings(tmp_path, caplog):
    torch.manual_seed(0)
    teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
    with caplog.at_level(logging.WARNING):
        distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=4, batch_size=8,
                progress=False, options={"lambda": 1e6, "calibration": "none"}, lr=0.01)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("out of balance" in w for w in warnings) == 1
    assert any("drowns the KD term" in w for w in warnings)
    assert sum("at chance (3 classes)" in w for w in warnings) == 1  # once, not every epoch


def test_default_settings_do_not_warn(tmp_path, caplog):
    torch.manual_seed(0)
    teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
    with caplog.at_level(logging.WARNING):
        distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=1, batch_size=8,
                progress=False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_the_calibration_pass_leaves_the_run_as_without_it(tmp_path, monkeypatch):
    """With ``calibration: none`` the balance check still runs; the trained student must be
    bit for bit the one trained without that pass (the global random state is untouched)."""
    import subdistill.training.trainer as trainer

    def run(tag):
        torch.manual_seed(0)
        teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
        return distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=2,
                       batch_size=8, progress=False, augment="crop-flip",
                       options={"lambda": 100.0, "calibration": "none"}).student.state_dict()

    checked = run("checked")
    monkeypatch.setattr(trainer, "calibrate", lambda *args, **kwargs: None)
    monkeypatch.setattr(trainer, "calibration_batches", lambda *args, **kwargs: [])
    unchecked = run("unchecked")
    assert all(torch.equal(checked[k], unchecked[k]) for k in checked)


def test_a_checkpoint_without_the_calibrated_weights_is_refused_in_one_line(tmp_path):
    """A checkpoint of an older version (no layer weights in the method state) is a
    CheckpointError naming the run directory, not a traceback."""
    from subdistill.training.checkpoint import CheckpointError

    def run():
        torch.manual_seed(0)
        teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
        return distill(teacher, student, _data(), _data(24, 1), pairs=PAIRS, epochs=1,
                       batch_size=8, progress=False, run_dir=tmp_path, resume=True)

    first = run()
    checkpoint = tmp_path / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["method"]["_extra_state"]["layer_weights"] == first.method.layer_weights
    del state["method"]["_extra_state"]
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match="older subdistill.*new run directory"):
        run()
