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
    assert len(parameter_groups([model], 0.1, 0.01)) == 1


def test_per_batch_schedule_in_training(tmp_path):
    from test_trainer import _run

    _, _, result = _run(tmp_path, method="student-only", epochs=2, lr=0.1, schedule="linear",
                        lr_per_step=True, optimizer="sgd", norm_bias_lr_scale=8)
    # 48 images in batches of 8: 6 batches an epoch, the second epoch starts at 1 - 6/12
    assert [row["lr"] for row in result.history] == pytest.approx([0.1, 0.05])
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)


def test_a_per_batch_schedule_is_restored_mid_epoch():
    from subdistill.training.config import TrainConfig
    from subdistill.training.state import TrainingState

    cfg = TrainConfig(epochs=4, lr=0.1, optimizer="sgd", schedule="linear", warmup_epochs=1,
                      lr_per_step=True, norm_bias_lr_scale=4)

    def fresh() -> TrainingState:
        model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        return TrainingState.create(model, nn.Module(), cfg, torch.Generator(), steps_per_epoch=5)

    state = fresh()
    for _ in range(7):
        state.optimizer.step()
        state.schedule.step()
    lrs = [group["lr"] for group in state.optimizer.param_groups]
    assert lrs == pytest.approx([0.1 * (1 - 2 / 15), 0.4 * (1 - 2 / 15)])
    restored = fresh()
    restored.load_state_dict(state.state_dict())
    assert [group["lr"] for group in restored.optimizer.param_groups] == pytest.approx(lrs)
