"""Kill a run (SIGKILL) at every file write, before and after the write lands, resume it, and
compare every file with the uninterrupted run's, bit for bit (wall-clock times aside)."""

import multiprocessing
import signal

import kill_points
import pytest
import yaml

from subdistill.models import create_model, save_weights

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["torch", "subdistill.training", "subdistill.bench"])


def _in_child(job, *args) -> int:
    """Run ``job(*args)`` in a fresh process; its exit code (-9 when it was killed)."""
    process = CONTEXT.Process(target=job, args=args)
    process.start()
    process.join(120)
    assert process.exitcode is not None, "the run hung"
    return process.exitcode


def _check_kills(job, reference, make_args, points):
    """For each (write, when): kill, resume, compare with ``reference``; the figures."""
    resumed = 0
    for write, when in points:
        folder, args = make_args(f"{when}{write}")
        assert _in_child(job, *args, write, when) == -signal.SIGKILL
        assert _in_child(job, *args) == 0
        assert kill_points.run_files(folder) == reference, (write, when)
        assert not list(folder.rglob("*.tmp")), (write, when)  # the killed write's leftovers
        resumed += 1
    return resumed


def test_a_run_killed_at_any_write_resumes_bit_for_bit(tmp_path):
    assert _in_child(kill_points.distill_run, str(tmp_path / "reference")) == 0
    reference = kill_points.run_files(tmp_path / "reference")
    assert {"bases.safetensors", "checkpoint.pt", "model_last.safetensors"} <= {
        p.name for p in (tmp_path / "reference").iterdir()}
    writes = kill_points.count_writes(kill_points.distill_run, str(tmp_path / "count"))
    assert writes >= 10  # config, bases, 2 x (best, last, checkpoint, metrics), summary

    def make_args(name):
        return tmp_path / name, (str(tmp_path / name),)

    points = [(w, when) for w in range(1, writes + 1) for when in ("before", "after")]
    assert _check_kills(kill_points.distill_run, reference, make_args, points) == 2 * writes


@pytest.fixture
def grid_config(tmp_path):
    teacher_args = {"depth": 8, "widths": [8, 8, 8]}
    weights = tmp_path / "teacher.safetensors"
    save_weights(create_model("cifar_resnet", 10, 1, **teacher_args), weights)

    def write(name):
        config = {
            "teacher": {"name": "cifar_resnet", "args": teacher_args, "weights": str(weights)},
            "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 4, 4]}},
            "data": {"dataset": "digits"}, "pairs": {"layer3": "layer3"},
            "grid": {"methods": ["subdistill", "kd"], "subtasks": ["confusable"],
                     "rhos": [0.8], "seeds": [0], "lambdas": [1.0, 0.1]},
            "train": {"epochs": 1, "batch_size": 128, "progress": False},
            "out_dir": str(tmp_path / name)}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return tmp_path / name, (str(path),)

    return write


def test_a_grid_killed_at_its_writes_resumes_to_the_same_ledger(grid_config):
    folder, args = grid_config("reference")
    assert _in_child(kill_points.bench_run, *args) == 0
    reference = kill_points.run_files(folder)
    assert "results.csv" in reference
    writes = kill_points.count_writes(kill_points.bench_run, *grid_config("count")[1])
    # a spread of kill points over the λ-selection cells, the final cell and the reports
    step = max(1, writes // 8)
    points = [(w, ("before", "after")[i % 2]) for i, w in enumerate(range(1, writes + 1, step))]
    assert _check_kills(kill_points.bench_run, reference, grid_config, points) == len(points)
