from pathlib import Path

import pytest

from subdistill.bench import BenchConfig
from subdistill.config import (
    DistillConfig,
    TeacherConfig,
    apply_overrides,
    from_mapping,
    load_config,
)
from subdistill.errors import ConfigError
from subdistill.explain.run import ExplainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _raw():
    return {"teacher": {"name": "cifar_resnet"}, "student": {"name": "cifar_resnet"},
            "pairs": {"layer1": "layer1"}}


def test_shipped_configs_are_valid():
    for path in CONFIGS.glob("*.yaml"):
        if path.name.startswith("bench-"):
            config = load_config(path, cls=BenchConfig)
            assert "subdistill" in config.grid.methods
        elif path.name.startswith("teacher-"):
            assert load_config(path, cls=TeacherConfig).model.name
            continue
        elif path.name.startswith("explain-"):
            config = load_config(path, cls=ExplainConfig)
            assert "subdistill" in config.students or config.bench
            continue
        else:
            config = load_config(path)
            assert config.method["name"] == "subdistill"
        assert config.pairs


def test_defaults_and_types():
    config = from_mapping(DistillConfig, _raw())
    assert config.train.epochs == 100 and config.train.lr == 1e-3 and config.data.rho == 0.8
    assert config.method_options() == {}
    raw = _raw()
    raw["train"] = {"lr": 1}  # ints are accepted for floats
    assert isinstance(from_mapping(DistillConfig, raw).train.lr, float)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(tranin={}), "unknown key 'tranin'. Did you mean 'train'"),
    (lambda r: r.update(train={"epoch": 3}), "Did you mean 'epochs'"),
    (lambda r: r.update(train={"epochs": "ten"}), "config.train.epochs: expected int"),
    (lambda r: r.update(train={"epochs": True}), "expected int"),
    (lambda r: r.update(train={"epochs": 0}), "train.epochs must be positive"),
    (lambda r: r.update(train={"seed": -1}), "train.seed must be in"),
    (lambda r: r["teacher"].pop("name"), "missing required key 'name'"),
    (lambda r: r.update(pairs=["layer1"]), "expected a mapping"),
    (lambda r: r.update(method={"lambda": 3}), "method.name is required"),
    (lambda r: r.update(data={"subtask": 3.5}), "config.data.subtask"),
])
def test_invalid_configs(mutate, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_mapping(DistillConfig, raw)


def test_overrides():
    raw = apply_overrides(_raw(), ["train.epochs=5", "method.name=kd", "data.subtask=[1, 2]",
                                   "run_dir=out"])
    config = from_mapping(DistillConfig, raw)
    assert config.train.epochs == 5 and config.method["name"] == "kd"
    assert config.data.subtask == [1, 2] and config.run_dir == "out"
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(_raw(), ["train.epochs"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(_raw(), ["run_dir=x", "run_dir.y=1"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="top level"):
        load_config(bad)


@pytest.mark.parametrize("device, message", [("abc", "not a device name"), ("cuda:99", "CUDA"),
                                             ("meta", "only cpu, cuda and mps")])
def test_devices_are_checked(device, message):
    raw = _raw()
    raw["train"] = {"device": device}
    with pytest.raises(ConfigError, match=message):
        from_mapping(DistillConfig, raw)


def test_relative_paths_in_a_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    from subdistill.config import load_config

    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "run.yaml").write_text(
        "teacher: {name: cifar_resnet, weights: ../weights/t.safetensors}\n"
        "student: {name: cifar_resnet, weights: /abs/s.safetensors}\n"
        "data: {dataset: digits, root: data}\nrun_dir: ../runs/x\n"
        "train: {teacher_cache: ''}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("project/configs/run.yaml", ["data.root=mine"])
    assert config.teacher.weights == "project/weights/t.safetensors"
    assert config.run_dir == "project/runs/x"
    assert config.student.weights == "/abs/s.safetensors"  # absolute: as written
    assert config.data.root == "mine"  # --set: relative to the working directory
    assert config.train.teacher_cache == ""  # empty: unset


def test_training_crops_are_not_cropped_twice(tmp_path):
    from subdistill.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("teacher: {name: cifar_resnet}\nstudent: {name: cifar_resnet}\n"
                    "data: {dataset: imagefolder, options: {train_crop: random-resized}}\n"
                    "train: {augment: resized-crop-flip}\n")
    with pytest.raises(ConfigError, match="would crop twice"):
        load_config(path)
    assert load_config(path, ["train.augment=flip"]).train.augment == "flip"


def test_shipped_configs_point_outside_their_folder():
    """Relative paths in configs/ resolve from the folder: none may land inside configs/."""
    from pathlib import Path

    from subdistill.config import read_yaml, resolve_paths

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("paper/*.yaml"))
    assert len(files) > 10
    for path in files:
        raw = resolve_paths(read_yaml(path), path.parent)
        found = [raw.get("run_dir"), raw.get("out_dir"), raw.get("ledger"),
                 (raw.get("data") or {}).get("root"), *(raw.get("students") or {}).values(),
                 *((raw.get(role) or {}).get("weights") for role in ("teacher", "student"))]
        for value in filter(None, found):
            assert not Path(value).resolve().is_relative_to(root), (path.name, value)
