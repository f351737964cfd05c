"""Random and mutated configs: the loader and the CLI raise only SubdistillErrors."""

import copy
import signal

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subdistill.cli import main
from subdistill.config import DistillConfig, from_mapping
from subdistill.errors import SubdistillError
from subdistill.methods import describe_methods

BASE = {
    "teacher": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [8, 16, 16]},
                "weights": None, "pretrained": False},
    "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
    "data": {"dataset": "digits", "root": None, "download": False, "subtask": "confusable",
             "rho": 0.8, "val_fraction": 0.2},
    "method": {"name": "subdistill", "lambda": 10.0, "basis": "pca", "normalization": "center",
               "positions": 5},
    "pairs": {"layer2": "layer2", "layer3": "layer3"},
    "train": {"epochs": 1, "batch_size": 16, "optimizer": "adamw", "lr": 0.001,
              "schedule": "step", "step_size": 1, "gamma": 0.5, "augment": "crop", "seed": 0,
              "device": "cpu", "num_workers": 0, "eval_batch_size": 64, "progress": False},
    "run_dir": "runs/x",
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


def _paths(node, prefix=()):
    """Every key path of a nested mapping."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


PATHS = list(_paths(BASE))


def _like(value):
    """Values of the same type as ``value``: the mutations most likely to get far."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-3, 300)  # larger depths build huge models: slow, not wrong
    if isinstance(value, float):
        return st.floats(allow_nan=True, allow_infinity=True)
    if isinstance(value, str):
        return st.one_of(st.text(max_size=10), st.sampled_from(
            ["cpu", "cuda", "cuda:7", "meta", "layer1", "stem", "fc", "kd", "all", "cosine",
             "sgd", "none", "flip", "0,1", "3,3", "cat", "imagefolder", "cifar10", "/nonexistent"]))
    if isinstance(value, list):
        return st.lists(st.one_of(st.integers(-2, 64), st.text(max_size=4)), max_size=5)
    return values


@st.composite
def mutated_configs(draw):
    config = copy.deepcopy(BASE)
    path = draw(st.sampled_from(PATHS))
    node = config
    for key in path[:-1]:
        node = node[key]
    action = draw(st.sampled_from(["like", "like", "like", "replace", "delete", "add"]))
    if action == "like":
        node[path[-1]] = draw(_like(node[path[-1]]))
    elif action == "replace":
        node[path[-1]] = draw(values)
    elif action == "delete":
        del node[path[-1]]
    else:
        node[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return config


@settings(max_examples=300, deadline=None)
@given(values)
def test_loader_raises_only_subdistill_errors(data):
    try:
        from_mapping(DistillConfig, data)
    except SubdistillError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=mutated_configs())
def test_cli_check_raises_only_subdistill_errors(tmp_path, config):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check", str(path)]) in (0, 2)


MODEL_KEYS = ["name", "in_channels", "num_classes", "weights", "pretrained", "depth", "widths",
              "blocks_per_stage", "stem_width", "expansion", "x"]
METHOD_KEYS = sorted({key for cls in describe_methods().values() for key in cls.hparams}
                     | {"pairs", "name", "x"})
extreme = st.one_of(st.integers(-2**40, 2**40), st.sampled_from([0, 1, 2**31, 10**12]),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e308, -1e308, 1e-308, float("nan")]),
                    st.lists(st.integers(-3, 2**20), max_size=5), st.text(max_size=6),
                    st.booleans(), st.none())


def _check_in_time(tmp_path, config) -> int:
    """``subdistill check`` on ``config``; a hang (over 60 s) fails the example."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    def hang(*_):
        raise TimeoutError("subdistill check hung")

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        return main(["check", str(path)])
    finally:
        signal.alarm(0)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(["teacher", "student"]),
       args=st.dictionaries(st.sampled_from(MODEL_KEYS), extreme, max_size=3))
def test_check_on_any_model_args_ends_with_a_result_or_one_line(tmp_path, role, args):
    config = copy.deepcopy(BASE)
    config[role]["args"] = {**config[role]["args"], **args}
    assert _check_in_time(tmp_path, config) in (0, 2)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(describe_methods())),
       options=st.dictionaries(st.sampled_from(METHOD_KEYS), extreme, max_size=3))
def test_check_on_any_method_options_ends_with_a_result_or_one_line(tmp_path, name, options):
    config = copy.deepcopy(BASE)
    config["method"] = {"name": name, **options}
    assert _check_in_time(tmp_path, config) in (0, 2)
