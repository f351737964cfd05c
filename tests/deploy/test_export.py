import json

import onnx
import pytest
import torch

from subdistill.cli import main
from subdistill.deploy.expert import build_expert, load_spec
from subdistill.deploy.export import ExportError, check_parity, export, load_exported


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt"),
                                         ("exported-program", ".pt2")])
def test_export_answers_as_pytorch_does_and_carries_its_metadata(tiny_run, tmp_path, fmt, suffix):
    out = tmp_path / f"expert{suffix}"
    record = export(tiny_run, fmt, out, parity_images=64)
    assert record["parity"]["argmax_agreement"] == 1.0
    assert record["parity"]["max_abs_logit_difference"] < 1e-4
    saved = json.loads((tmp_path / f"expert{suffix}.json").read_text())
    assert saved["classes"] == ["3", "5", "8", "9"] and saved["input_shape"] == [1, 8, 8]
    assert saved["format"] == fmt and saved["run_fingerprint"]
    spec = load_spec(tiny_run)
    images = torch.rand(5, 1, 8, 8)  # another batch size than the export's example
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(images), build_expert(spec)(images),
                                   atol=1e-4, rtol=1e-4)
    assert not list(tmp_path.glob(".*.tmp*"))


def test_onnx_metadata_round_trips(tiny_run, tmp_path):
    export(tiny_run, "onnx", tmp_path / "m.onnx", parity_images=16)
    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["subdistill.classes"] == ["3", "5", "8", "9"]
    assert props["subdistill.mean"] == load_spec(tiny_run).mean


def test_a_wrong_export_is_refused():
    model = torch.nn.Linear(4, 3)
    with pytest.raises(ExportError, match="answers differently"):
        check_parity(model, lambda x: -model(x), torch.randn(32, 4))


def test_export_errors_are_one_line(tiny_run, tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "is not a finished run directory" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--format", "torchscript", "--quantize", "int8"]) == 2
    assert "--quantize int8 needs --format onnx" in capsys.readouterr().err


def test_int8_quantisation_reports_both_accuracies(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"), "--quantize",
                 "int8", "--parity-images", "32"]) == 0
    assert "int8 model m.int8.onnx" in capsys.readouterr().out
    q = json.loads((tmp_path / "m.onnx.json").read_text())["int8"]
    assert q["int8_bytes"] < q["fp32_bytes"] and 0 <= q["int8_accuracy"] <= 1
    run = load_exported(tmp_path / "m.int8.onnx", "onnx")
    assert run(torch.rand(3, 1, 8, 8)).shape == (3, 4)
