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


def test_a_one_channel_batch_gets_nchw_strides():
    # (B, 1, H, W) with stride 1 on the channel: contiguous() keeps it, convolutions go channels_last
    ambiguous = torch.randn(4, 8, 8, 1).permute(0, 3, 1, 2)
    assert ambiguous.is_contiguous() and ambiguous.stride() == (64, 1, 8, 1)
    nchw = precision.to_layout(ambiguous, channels_last=False)
    assert nchw.stride() == (64, 64, 8, 1) and torch.equal(nchw, ambiguous)
    plain = torch.randn(4, 3, 8, 8)
    assert precision.to_layout(plain, channels_last=False) is plain
    assert precision.to_layout(plain, channels_last=True).is_contiguous(
        memory_format=torch.channels_last)


def _resnet(widths):
    from subdistill.models import create_model

    return create_model("cifar_resnet", num_classes=4, in_channels=1, depth=8, widths=widths)


def test_the_avx2_channels_last_hazard_is_found_by_module_path():
    assert precision.channels_last_hazards(_resnet([4, 8, 8])) == ["layer2.0.downsample.0"]
    assert precision.channels_last_hazards(_resnet([8, 16, 16])) == []


@pytest.mark.parametrize("avx2", [True, False])
def test_channels_last_falls_back_to_nchw_only_where_oneDNN_would_corrupt_memory(
        monkeypatch, caplog, avx2):
    monkeypatch.setattr(precision, "onednn_avx2", lambda: avx2)
    with caplog.at_level(logging.WARNING, logger="subdistill.precision"):
        assert precision.usable_channels_last(_resnet([4, 8, 8]), "cpu", True) is (not avx2)
        assert precision.usable_channels_last(_resnet([8, 16, 16]), "cpu", True) is True
        assert precision.usable_channels_last(_resnet([4, 8, 8]), "cpu", False) is False
    assert ("layer2.0.downsample.0" in caplog.text) is avx2


@pytest.mark.parametrize(("isa", "avx2"), [("AVX2", True), ("avx2_vnni", True),
                                           ("AVX512_CORE", False), ("SSE41", False)])
def test_oneDNN_isa_cap_is_read_from_the_environment(monkeypatch, isa, avx2):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert precision.onednn_avx2() is avx2
