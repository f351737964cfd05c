"""Bad inputs across the commands, as a table: each must end with exit status 2 and one line
``error: ...`` that says what is wrong (no traceback, no exit 0, no hang), and must write and
delete nothing it should not."""

import copy
import gzip
import io
import signal
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from subdistill.cli import main
from subdistill.models import create_model, save_weights

TEACHER_ARGS = {"depth": 8, "widths": [8, 16, 16]}


@pytest.fixture
def base(tmp_path):
    """A digits distillation config (saved random teacher) and a writer of variants of it."""
    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **TEACHER_ARGS), weights)
    config = {
        "teacher": {"name": "cifar_resnet", "args": TEACHER_ARGS, "weights": str(weights)},
        "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
        "data": {"dataset": "digits", "subtask": "confusable"},
        "method": {"name": "subdistill"}, "pairs": {"layer2": "layer2", "layer3": "layer3"},
        "train": {"epochs": 1, "batch_size": 64, "progress": False},
        "run_dir": str(tmp_path / "run"),
    }

    def write(name, change=None, raw=None):
        variant = copy.deepcopy(config)
        if change is not None:
            change(variant)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(variant)) if raw is None else path.write_bytes(raw)
        return path

    return write


def _set(dotted, value):
    def change(config):
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


def _drop(dotted):
    def change(config):
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]
    return change


CONFIG_CASES = [  # (what, change of the config, what the message must say)
    ("a fractional integer option", _set("method.positions", 2.5), "must be an integer"),
    ("a negative sample count", _set("method.positions", -1), "positions must be a finite"),
    ("an absurd epoch count", _set("train.epochs", 10**12), "train.epochs must be positive"),
    ("an absurd batch size", _set("train.batch_size", 10**12), "train.batch_size must be positive"),
    ("an infinite learning rate", _set("train.lr", float("inf")), "train.lr must be positive"),
    ("a NaN learning rate", _set("train.lr", float("nan")), "train.lr must be positive"),
    ("too many cache copies", _set("train.cache_copies", 10**9), "cache_copies must be in"),
    ("an overflowing temperature", _set("method.temperature", 1e308), "temperature must be a finite"),
    ("a zero temperature", _set("method.temperature", 0), "temperature must be a finite number in (0"),
    ("a negative λ", _set("method.lambda", -5), "lambda must be a finite number in [0"),
    ("a NaN λ", _set("method.lambda", float("nan")), "lambda must be a finite number in [0"),
    ("a mistyped schedule", _set("train.schedule", "cosin"), "Did you mean 'cosine'"),
    ("a mistyped augmentation", _set("train.augment", "flipp"), "unknown augmentation 'flipp'"),
    ("a mistyped optimiser", _set("train.optimizer", "adam"), "unknown optimizer 'adam'"),
    ("a huge depth", _set("student.args.depth", 2**31), "At most 1000 blocks per stage"),
    ("a huge width", _set("student.args.widths", [2**20, 8, 8]), "65536 channels"),
    ("model args with name", _set("student.args.name", "x"), "must not set 'name'"),
    ("model args with in_channels", _set("student.args.in_channels", 3), "must not set 'in_channels'"),
    ("model args with weights", _set("teacher.args.weights", "x"), "must not set 'weights'"),
    ("model args with pretrained", _set("teacher.args.pretrained", True), "must not set 'pretrained'"),
    ("method options with pairs", _set("method.pairs", 3), "has no option 'pairs'"),
    ("an unknown method", _set("method.name", "subdistil"), "Did you mean 'subdistill'"),
    ("an unknown basis", _set("method.basis", "ica"), "subdistill: basis must be one of gradpca"),
    ("a missing weights file", _set("teacher.weights", "nope.safetensors"), "does not exist"),
    ("a weights file that is not one", _set("teacher.weights", "__config__"), "not a safetensors file"),
    ("a negative seed", _set("train.seed", -1), "train.seed must be in"),
    ("a training fraction above 1", _set("data.rho", 1.5), "rho must be in (0"),
    ("a subtask that is a path", _set("data.subtask", "../../../escape"), "unknown digits subtask preset"),
    ("a device this machine lacks", _set("train.device", "cuda:7"), "CUDA is not available"),
    ("an unknown top-level key", _set("gird", {}), "unknown key 'gird'"),
    ("a missing section", _drop("teacher"), "missing required key 'teacher'"),
    ("a layer that does not exist", _set("pairs", {"layer9": "layer3"}), "layer9"),
    ("a run directory that is a file", _set("run_dir", "__config__"), "is an existing file"),
]


def _alarm(seconds):
    def hang(*_):
        raise TimeoutError("hung")
    signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)


def _one_line_error(argv, capsys, must_say):
    _alarm(120)
    try:
        status = main([str(a) for a in argv])
    finally:
        signal.alarm(0)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    lines = [line for line in err.splitlines() if not line.startswith(("WARNING", "INFO"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert must_say in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("what, change, must_say", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
@pytest.mark.parametrize("command", ["check", "distill"])
def test_bad_config_values(base, capsys, tmp_path, what, change, must_say, command):
    path = base("case", change)
    text = path.read_text().replace("__config__", str(path))
    path.write_text(text)
    _one_line_error([command, path], capsys, must_say)
    if command == "distill":
        assert not (tmp_path / "run").exists()  # refused before anything was written


FILE_CASES = [
    ("a non-UTF-8 config", b"teacher: \xff\xfe\n", "is not a UTF-8 text file"),
    ("a binary config", bytes(range(256)), "is not a UTF-8 text file"),
    ("invalid YAML", b"teacher: [unclosed\n", "is not valid YAML"),
    ("a list at the top", b"- a\n- b\n", "the top level must be a mapping"),
]


@pytest.mark.parametrize("what, raw, must_say", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_files(base, capsys, what, raw, must_say):
    for command in ("check", "distill", "bench", "explain", "train-teacher"):
        _one_line_error([command, base("raw", raw=raw)], capsys, must_say)


def test_missing_and_folder_configs(tmp_path, capsys):
    _one_line_error(["check", tmp_path / "none.yaml"], capsys, "does not exist")
    _one_line_error(["check", tmp_path], capsys, "does not exist")


LAYERS_CASES = [
    (["--input-size", "3,32"], "expects C,H,W as three positive integers"),
    (["--input-size", "a,b,c"], "expects C,H,W"),
    (["--input-size", "3,0,0"], "expects C,H,W"),
    (["--set", "depth"], "--set expects KEY=VALUE"),
    (["--set", "depth=[1"], "is not a YAML value"),
    (["--set", "depth=7"], "depth=7 does not fit"),
    (["--num-classes", "0"], "must be >= 1"),
]


@pytest.mark.parametrize("extra, must_say", LAYERS_CASES, ids=[" ".join(c[0]) for c in LAYERS_CASES])
def test_bad_layers_inputs(capsys, extra, must_say):
    _one_line_error(["layers", "cifar_resnet", *extra], capsys, must_say)


def test_layers_uses_the_input_size_a_model_declares(capsys):
    assert main(["layers", "vit_b_16"]) == 0  # 224 px, not the 32 px default of CNNs
    assert "encoder.layers.encoder_layer_11" in capsys.readouterr().out
    _one_line_error(["layers", "vit_b_16", "--input-size", "3,32,32"], capsys,
                    "cannot run on a 3x32x32 input")


@pytest.mark.parametrize("extra, must_say", [
    (["--rho", "1.5"], "rho must be in (0"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent"], "not found"),
    (["--seeds", "a"], "--seeds expects comma-separated integers"),
    (["--methods", "kd,nope"], "unknown method 'nope'"),
    (["--epochs-scale", "0"], "--epochs-scale must be positive"),
    (["--device", "tpu"], "'tpu' is not a device name"),
    (["--device", "cuda:7"], "cuda:7"),
])
def test_the_demo_checks_its_inputs_before_it_deletes_or_writes_anything(tmp_path, capsys, extra,
                                                                         must_say):
    out = tmp_path / "demo"
    earlier = out / "teacher" / "model_best.safetensors"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier demo")
    _one_line_error(["demo", "--out", out, *extra], capsys, must_say)
    assert earlier.read_bytes() == b"an earlier demo"
    assert sorted(p.name for p in out.rglob("*")) == ["model_best.safetensors", "teacher"]


def _bench(base, tmp_path, **grid):
    config = yaml.safe_load(base("distill").read_text())
    del config["run_dir"], config["method"]
    config["grid"] = {"methods": ["kd"], "seeds": [0], **grid}
    config["out_dir"] = str(tmp_path / "bench" / "out")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("grid, must_say", [
    ({"subtasks": ["../../../escape"]}, "unknown digits subtask preset '../../../escape'"),
    ({"rhos": [0.9]}, "rho must be in (0"),
    ({"methods": ["kd", "nope"]}, "unknown method 'nope'"),
    ({"lambdas": []}, "grid.lambdas must not be empty"),
    ({"subtasks": [[3, 99]]}, "out of range"),
])
def test_bad_bench_configs_are_refused_by_check_and_before_the_grid_writes(base, tmp_path,
                                                                           capsys, grid,
                                                                           must_say):
    path = _bench(base, tmp_path, **grid)
    _one_line_error(["check", path], capsys, must_say)
    _one_line_error(["bench", path], capsys, must_say)
    assert not (tmp_path / "bench").exists() and not (tmp_path.parent / "escape").exists()


def test_check_covers_every_config_kind(base, tmp_path, capsys):
    assert main(["check", str(_bench(base, tmp_path, methods=["kd", "subdistill"],
                                     lambdas=[1.0, 0.1]))]) == 0
    assert "bench config OK" in capsys.readouterr().out
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(yaml.safe_dump({"model": {"name": "cifar_resnet", "args": TEACHER_ARGS},
                                       "data": {"dataset": "digits"}}))
    assert main(["check", str(teacher)]) == 0
    assert "teacher config OK" in capsys.readouterr().out
    teacher.write_text(yaml.safe_dump({"model": {"name": "cifar_resnet", "args": {"depth": 9}}}))
    _one_line_error(["check", teacher], capsys, "depth=9 does not fit")
    explain = tmp_path / "explain.yaml"
    config = yaml.safe_load(base("distill").read_text())
    explain_config = {"teacher": config["teacher"], "student": config["student"],
                      "data": config["data"], "students": {"kd": str(tmp_path / "nothing")},
                      "attributions": ["lrp"]}
    explain.write_text(yaml.safe_dump(explain_config))
    _one_line_error(["check", explain], capsys, "does not exist")
    explain_config["attributions"] = ["gradcam"]
    explain.write_text(yaml.safe_dump(explain_config))
    _one_line_error(["check", explain], capsys, "unknown attribution method 'gradcam'")


def _jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _cifar_zip(path, damage):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(3):
            data = _jpeg()
            archive.writestr(f"train/cat/{i:04d}.jpg", data[:40] if damage == "jpeg" and i else data)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    if damage == "not a zip":
        path.write_bytes(b"PK but not really")


def _idx_gz(path, truncate):
    array = np.zeros((10, 4, 4), dtype=np.uint8)
    data = gzip.compress(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
                         + array.tobytes())
    path.write_bytes(data[:truncate] if truncate else data)


@pytest.mark.parametrize("damage, must_say", [
    ("not a zip", "is not a readable zip file"),
    ("truncated", "is not a readable zip file"),
    ("jpeg", "member train/cat/0001.jpg is damaged"),
])
def test_damaged_cifar_zips(base, tmp_path, capsys, monkeypatch, damage, must_say):
    monkeypatch.setenv("SUBDISTILL_CACHE", str(tmp_path / "cache"))
    _cifar_zip(tmp_path / "data" / "cifar10-jpeg" / "train.zip", damage)
    path = base("cifar", _set("data", {"dataset": "cifar10-jpeg", "root": str(tmp_path / "data")}))
    _one_line_error(["check", path], capsys, must_say)


def test_a_truncated_fashion_mnist_file(base, tmp_path, capsys):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    _idx_gz(folder / "train-images-idx3-ubyte.gz", truncate=30)
    _idx_gz(folder / "train-labels-idx1-ubyte.gz", truncate=0)
    path = base("fmnist", _set("data", {"dataset": "fashion-mnist", "root": str(tmp_path / "data")}))
    _one_line_error(["check", path], capsys, "is truncated or damaged")


def test_a_run_directory_is_never_mixed(base, tmp_path, capsys):
    path = base("run")
    assert main(["distill", str(path)]) == 0
    capsys.readouterr()
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    line = _one_line_error(["distill", path], capsys, "holds an earlier run")
    assert "--resume" in line and "--overwrite" in line
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    changed = base("changed", _set("data.rho", 0.5))
    line = _one_line_error(["distill", changed, "--resume"], capsys, "other settings")
    assert "data.train" in line
    other = tmp_path / "other.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **TEACHER_ARGS), other)
    _one_line_error(["distill", base("other", _set("teacher.weights", str(other))), "--resume"],
                    capsys, "teacher (")
    _one_line_error(["distill", path, "--resume", "--overwrite"], capsys, "exclude each other")
    assert main(["distill", str(base("longer", _set("train.epochs", 2))), "--overwrite"]) == 0
    epochs = [yaml.safe_load(r)["epoch"] for r in
              (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_a_run_directory_in_use_is_refused(base, tmp_path, capsys):
    import os
    import socket

    run = tmp_path / "run"
    run.mkdir()
    lock = run / ".lock"
    lock.write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process
    _one_line_error(["distill", base("run")], capsys, "is in use by process")
    lock.write_text(f"999999999 {socket.gethostname()}\n")  # a process that is gone
    assert main(["distill", str(base("run"))]) == 0
    assert not lock.exists()
