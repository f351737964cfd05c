"""bf16 on hardware without native bf16: detected and warned about, never silently slow."""

from __future__ import annotations

import logging

import pytest
import torch

from subdistill import precision


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(monkeypatch, caplog, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert precision.native_bf16("cpu") is native
    with caplog.at_level(logging.WARNING, logger="subdistill.precision"):
        warned = precision.warn_if_emulated("cpu", "bf16")
    assert warned is (not native)
    assert ("no native bf16 instructions" in caplog.text) is (not native)
    assert "train.precision: fp32" in caplog.text or native


def test_fp32_is_never_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="subdistill.precision"):
        assert precision.warn_if_emulated("cpu", "fp32") is False
    assert caplog.text == ""


def test_the_warning_reaches_a_training_run(monkeypatch):
    from subdistill.training import trainer

    calls = []
    monkeypatch.setattr(trainer, "warn_if_emulated", lambda d, p: calls.append((str(d), p)))
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 2, 2), torch.arange(8) % 2)
    trainer.distill(None, student, data, data, method="student-only", epochs=1,
                    batch_size=4, precision="bf16", augment="none")
    assert calls == [("cpu", "bf16")]
