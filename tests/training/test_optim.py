import pytest
import torch
from torch import nn

from subdistill.training.optim import build_optimizer, parameter_groups, schedule_factor


def test_per_batch_schedule_follows_the_epoch_schedule_batch_by_batch():
    per_batch = [schedule_factor("linear", s, 4, 1, 0.5, warmup_epochs=1, steps_per_epoch=3)
                 for s in range(12)]
    assert per_batch[:3] == pytest.approx([1 / 4, 2 / 4, 3 / 4])  # warm-up over 3 batches
    assert per_batch[3:] == pytest.approx([1 - i / 9 for i in range(9)])  # to 1/9 at the end
    assert schedule_factor("step", 7, 4, 2, 0.5, steps_per_epoch=3) == pytest.approx(0.5)
    assert schedule_factor("step", 5, 4, 2, 0.5, steps_per_epoch=3) == pytest.approx(1.0)


def test_norm_shifts_get_their_own_learning_rate_and_the_same_decay_per_step():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4))
    groups = parameter_groups([model], lr=0.1, weight_decay=0.01, norm_bias_lr_scale=64)
    assert [len(g["params"]) for g in groups] == [4, 2]  # conv weight, bias; the norm scales
    assert {id(p) for p in groups[1]["params"]} == {id(model[1].bias), id(model[3].bias)}
    optimizer = build_optimizer(groups, "sgd", 0.1, 0.01, 0.9)
    fast = optimizer.param_groups[1]
    assert fast["lr"] == pytest.approx(6.4)
    assert fast["lr"] * fast["weight_decay"] == pytest.approx(0.1 * 0.01)
    plain = parameter_groups([model], 0.1, 0.01)  # at scale 1: the parameters as they are
    assert [id(p) for p in plain] == [id(p) for p in model.parameters()]


def test_per_batch_schedule_in_training(tmp_path):
    from test_trainer import _run

    _, _, result = _run(tmp_path, method="student-only", epochs=2, lr=0.1, schedule="linear",
                        lr_per_step=True, optimizer="sgd", norm_bias_lr_scale=8)
    # 48 images in batches of 8: 6 batches an epoch, the second epoch starts at 1 - 6/12
    assert [row["lr"] for row in result.history] == pytest.approx([0.1, 0.05])
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)


def test_a_per_batch_schedule_resumes_at_the_next_epochs_first_batch():
    from subdistill.training.config import TrainConfig
    from subdistill.training.state import TrainingState

    cfg = TrainConfig(epochs=4, lr=0.1, optimizer="sgd", schedule="linear", warmup_epochs=1,
                      lr_per_step=True, norm_bias_lr_scale=4)

    def fresh(steps_per_epoch: int) -> TrainingState:
        model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        return TrainingState.create(model, nn.Module(), cfg, torch.Generator(), steps_per_epoch)

    state = fresh(5)
    for _ in range(10):  # two epochs of five batches
        state.optimizer.step()
        state.schedule.step()
    state.history = [{"epoch": 1}, {"epoch": 2}]
    lrs = [group["lr"] for group in state.optimizer.param_groups]
    assert lrs == pytest.approx([0.1 * (1 - 5 / 15), 0.4 * (1 - 5 / 15)])
    restored = fresh(5)
    restored.load_state_dict(state.state_dict())
    assert [group["lr"] for group in restored.optimizer.param_groups] == pytest.approx(lrs)
    regrouped = fresh(4)  # e.g. a torchrun job resumed on more processes: 4 batches an epoch
    regrouped.load_state_dict(state.state_dict())
    assert regrouped.schedule.last_epoch == 8
    assert regrouped.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 4 / 12))
