import pytest
import torch
from torch import nn

from subdistill.errors import LayerNotFoundError, ModelError
from subdistill.taps import LayerTaps, align, as_grid, prefix_token_count, resolve_module


class InplaceAfterTap(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.lin(x)).sum(-1)


def test_hooks_capture_and_are_removed(tiny_cnn):
    x = torch.randn(2, 3, 8, 8)
    with LayerTaps(tiny_cnn, ["stage1", "stage2.0"]) as taps:
        tiny_cnn(x)
        assert taps.outputs["stage1"].shape == (2, 6, 8, 8)
        assert taps.outputs["stage2.0"].shape == (2, 8, 4, 4)
    assert not any(m._forward_hooks for m in tiny_cnn.modules())


def test_hooks_are_removed_when_a_path_is_wrong(tiny_cnn):
    with pytest.raises(LayerNotFoundError, match="Did you mean 'stage2'"):
        with LayerTaps(tiny_cnn, ["stage1", "stage3"]):
            pass
    assert not any(m._forward_hooks for m in tiny_cnn.modules())


def test_capture_survives_inplace_ops_and_keeps_gradients():
    model = InplaceAfterTap()
    x = torch.randn(3, 4)
    with LayerTaps(model, ["lin"]) as taps:
        out = model(x)
        captured = taps.outputs["lin"]
        torch.testing.assert_close(captured, model.lin(x))  # not rectified in place
        grad, = torch.autograd.grad(out.sum(), captured)
    torch.testing.assert_close(grad, (model.lin(x) > 0).float())


class TwoLayers(nn.Module):
    """``lin`` then ``act``; ``act`` rectifies in place when ``inplace`` (only in training
    when ``train_only``)."""

    def __init__(self, inplace: bool, train_only: bool = False):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.inplace, self.train_only = inplace, train_only
        self.received: list[torch.Tensor] = []

    def forward(self, x):
        h = self.lin(x)
        self.received.append(h)
        if self.inplace and (self.training or not self.train_only):
            return h.relu_()
        return h.relu()


def test_outputs_left_alone_downstream_are_no_longer_copied():
    model = TwoLayers(inplace=False)
    x = torch.randn(3, 4, requires_grad=True)
    with LayerTaps(model, ["lin"]) as taps:
        model(x)
        first = taps.outputs["lin"]
        out = model(x)
        second = taps.outputs["lin"]
        grad, = torch.autograd.grad(out.sum(), second)
    assert model.received[0].data_ptr() != first.data_ptr()  # the probing pass hands down a copy
    assert model.received[1].data_ptr() == second.data_ptr()  # then the output itself
    torch.testing.assert_close(grad, (model.lin(x) > 0).float())


class Residual(nn.Module):
    """A tapped ``stem`` whose output three later operations read (as in a residual block)."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.stem(x)
        return (self.a(h).tanh() + h + self.b(h).sin()).sum(-1)


def test_an_alias_gives_the_gradients_of_a_copy_bit_for_bit():
    torch.manual_seed(0)
    model = Residual()
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    grads = {}
    for clone in (True, None):
        with LayerTaps(model, ["stem"], clone=clone) as taps:
            for _ in range(2):  # with clone=None the second pass hands down an alias
                model.zero_grad()
                out = model(x)
                (out.square().sum() + taps.outputs["stem"].sin().sum()).backward()
        grads[clone] = [p.grad.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads[True], grads[None], strict=True))


@pytest.mark.parametrize("clone", [None, True])
def test_outputs_written_downstream_stay_copied_in_every_pass(clone):
    model = TwoLayers(inplace=True)
    x = torch.randn(5, 4)
    captured = []
    with LayerTaps(model, ["lin"], clone=clone) as taps:
        for _ in range(3):
            model(x)
            captured.append(taps.outputs["lin"])
            torch.testing.assert_close(captured[-1], model.lin(x))
    assert all(h is not c for h, c in zip(model.received, captured, strict=True))


def test_each_mode_is_probed_on_its_own():
    model = TwoLayers(inplace=True, train_only=True).eval()
    x = torch.randn(5, 4)
    with LayerTaps(model, ["lin"]) as taps:
        for training in (False, False, True, True, False):
            model.train(training)
            model(x)
            torch.testing.assert_close(taps.outputs["lin"], model.lin(x))


def test_an_uncopied_output_written_downstream_is_an_error():
    model = TwoLayers(inplace=True)
    with LayerTaps(model, ["lin"], clone=False) as taps:
        model(torch.randn(2, 4))
        with pytest.raises(ModelError, match="'lin' was modified in place.*clone=True"):
            _ = taps.outputs


def test_paths_resolve_through_wrappers(tiny_cnn):
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert resolve_module(Wrapper(tiny_cnn), "stage2.1") is tiny_cnn.stage2[1]
    assert resolve_module(Wrapper(tiny_cnn), "module.stage1") is tiny_cnn.stage1


def test_tokens_become_a_grid_without_class_token():
    b, side, c = 2, 3, 5
    patches = torch.arange(b * side * side * c, dtype=torch.float32).reshape(b, side * side, c)
    tokens = torch.cat([torch.full((b, 1, c), -1.0), patches], dim=1)
    grid = as_grid(tokens)
    assert grid.shape == (b, c, side, side)
    torch.testing.assert_close(grid[:, :, 1, 2], patches[:, 1 * side + 2])
    assert (grid != -1).all()


def test_prefix_tokens_with_registers():
    assert prefix_token_count(197) == 1
    assert prefix_token_count(201) == 5  # class + 4 registers
    assert prefix_token_count(196) == 0
    with pytest.raises(LayerNotFoundError):
        prefix_token_count(35)  # 27..35 holds no square


def test_vectors_become_1x1_maps_and_bad_ranks_fail():
    assert as_grid(torch.randn(4, 7)).shape == (4, 7, 1, 1)
    with pytest.raises(LayerNotFoundError):
        as_grid(torch.randn(2, 3, 4, 5, 6))


def test_align_pools_the_larger_map():
    t, s = torch.randn(2, 8, 8, 8), torch.randn(2, 4, 4, 4)
    t2, s2 = align(t, s)
    assert t2.shape == (2, 8, 4, 4) and s2 is s
    torch.testing.assert_close(t2[:, :, 0, 0], t[:, :, :2, :2].mean(dim=(2, 3)))
    s3, t3 = align(s, t)
    assert s3 is s and t3.shape == (2, 8, 4, 4)

