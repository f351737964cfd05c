import pytest
import torch
import torch.nn.functional as F

from subdistill.errors import ConfigError
from subdistill.methods import StepOutputs, build_method


def test_label_smoothing_is_the_cross_entropy_option():
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    outputs = StepOutputs(logits, labels, None, {}, {})
    plain = build_method("student-only")(outputs)["ce"]
    smoothed = build_method("student-only", label_smoothing=0.2)(outputs)["ce"]
    torch.testing.assert_close(plain, F.cross_entropy(logits, labels))
    torch.testing.assert_close(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.2))
    with pytest.raises(ConfigError, match="label_smoothing must be a finite number in"):
        build_method("student-only", label_smoothing=1.5)


def test_teacher_config_label_smoothing_reaches_the_run(tmp_path):
    import json

    from subdistill.cli import main

    config = tmp_path / "teacher.yaml"
    config.write_text(f"""
model: {{name: cifar_resnet, args: {{depth: 8, widths: [4, 4, 8]}}}}
data: {{dataset: digits}}
label_smoothing: 0.1
train: {{epochs: 1, batch_size: 64, progress: false}}
run_dir: {tmp_path / 'run'}
""")
    assert main(["train-teacher", str(config)]) == 0
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    assert "label_smoothing: 0.1" in recorded
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["method"] == "student-only"
    config.write_text(config.read_text().replace("0.1", "-1"))
    assert main(["check", str(config)]) == 2
