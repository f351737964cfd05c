import torch
from torch import nn

from subdistill.modes import eval_mode, frozen


def _model() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a user's deliberately frozen BatchNorm
    return model


def test_eval_mode_restores_each_modules_own_flag():
    model = _model()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[3].training
    assert not model[1].training  # model.train(True) would have switched it back


def test_frozen_restores_flags_and_gradients_even_after_an_error():
    model = _model()
    model[0].bias.requires_grad_(False)
    try:
        with frozen(model):
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError
    except RuntimeError:
        pass
    assert model[0].weight.requires_grad and not model[0].bias.requires_grad
    assert model.training and not model[1].training
    with frozen(model), torch.no_grad():
        model(torch.zeros(1, 1, 5, 5))
