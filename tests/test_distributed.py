"""Multi-process runs on the CPU (gloo, two processes): the subspace fit and DDP training."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from conftest import TinyCNN
from subdistill import distributed
from subdistill.config import load_config
from subdistill.errors import ConfigError
from subdistill.jobs import run_fit_subspaces
from subdistill.methods import describe_methods
from subdistill.models import create_model, save_weights
from subdistill.subspace.fit import accumulate_statistics
from subdistill.subspace.io import read_bases
from subdistill.training import distill, epoch

PAIRS = {"stage1": "stage1", "stage2": "stage2"}


def test_single_process_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    data = TensorDataset(torch.arange(5))
    with distributed.process_group("cpu"):
        assert not torch.distributed.is_initialized()
        assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
        assert distributed.shard(data) is data
        assert distributed.local_device("cpu") == torch.device("cpu")
        t = torch.ones(3)
        distributed.all_reduce_sum([t])
        assert torch.equal(t, torch.ones(3))
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: still no group
    with distributed.process_group("cpu"):
        assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("n", [1, 7, 12])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_even_shard_is_distributed_samplers_split(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shares = [distributed.even_shard(order, r, world) for r in range(world)]
    for r, share in enumerate(shares):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)
        assert share.tolist() == [order[i].item() for i in sampler]
    assert set(torch.cat(shares).tolist()) == set(range(n))


def test_sampled_positions_do_not_depend_on_the_shard(tiny_cnn, tiny_images):
    """Each image's positions depend on its index only: the shards' sums add up to the whole."""
    whole = accumulate_statistics(tiny_cnn, DataLoader(tiny_images, batch_size=16), ["stage1"],
                                  positions=5, seed=3)["stage1"].pairs
    parts = [accumulate_statistics(tiny_cnn,
                                   DataLoader(Subset(tiny_images, range(r, 40, 3)), batch_size=4),
                                   ["stage1"], positions=5, seed=3, shard=(r, 3))["stage1"].pairs
             for r in range(3)]
    assert sum(p.count for p in parts) == whole.count == 40 * 5
    for got, expected in zip(zip(*(p.sums()[1:] for p in parts)), whole.sums()[1:]):
        # float32 convolutions round differently for other batch sizes: not bit-identical
        torch.testing.assert_close(sum(got), expected, rtol=1e-6, atol=1e-6)


# -- two processes -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(n, seed):
    prototypes = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % 3
    x = prototypes[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, y)


class _Interrupted(Exception):
    pass


def _run(out, name, **kw):
    torch.manual_seed(0)
    teacher, student = TinyCNN((6, 8)), TinyCNN((4, 4))
    result = distill(teacher, student, _data(50, 0), _data(25, 1), test=_data(21, 2),
                     method="subdistill", pairs=PAIRS, epochs=2, batch_size=8, augment="flip",
                     progress=False, run_dir=out / name, **kw)
    torch.save({"student": result.student.state_dict(), "method": result.method.state_dict(),
                "history": [{k: v for k, v in row.items() if k != "seconds"}
                            for row in result.history],
                "test": result.test_accuracy},
               out / f"{name}-rank{distributed.rank()}.pt")


def _train_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        assert distributed.world_size() == world
        _run(out, "straight")
        _run(out, "cached", teacher_cache=str(out / "cache"), cache_copies=2)
        calls, accuracy = [], epoch.accuracy

        def stop_in_epoch_2(*args, **kwargs):  # every rank stops at the same point
            calls.append(1)
            if len(calls) == 2:
                raise _Interrupted
            return accuracy(*args, **kwargs)

        epoch.accuracy = stop_in_epoch_2
        try:
            _run(out, "resumed")
        except _Interrupted:
            pass
        finally:
            epoch.accuracy = accuracy
        _run(out, "resumed", resume=True)


def test_ddp_training_ranks_agree_and_rank_0_writes(tmp_path):
    mp.spawn(_train_worker, args=(2, _free_port(), tmp_path), nprocs=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "cache", "cached", "resumed", "straight"]
    caches = [p for p in (tmp_path / "cache").iterdir() if p.name != "accuracy"]
    assert len(caches) == 1  # one teacher cache, built by rank 0
    # the teacher's validation and test accuracies, scored by both ranks together, are
    # remembered once (by rank 0)
    assert len(list((tmp_path / "cache" / "accuracy").glob("*.json"))) == 2
    for name in ("straight", "cached", "resumed"):
        run = tmp_path / name
        assert sorted(p.name for p in run.iterdir()) == [
            "bases.safetensors", "checkpoint.pt", "config.yaml", "metrics.jsonl",
            "model_best.safetensors", "model_last.safetensors", "summary.json", "train.log"]
        assert [json.loads(line)["epoch"] for line in
                (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
        ranks = [torch.load(tmp_path / f"{name}-rank{r}.pt") for r in range(2)]
        assert ranks[0]["history"] == ranks[1]["history"]
        assert ranks[0]["test"] == ranks[1]["test"]
        for part in ("student", "method"):  # weights, BatchNorm statistics and heads
            a, b = ranks[0][part], ranks[1][part]
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
                       for k in a), (name, part)  # the calibrated layer weights too
    straight, resumed = (torch.load(tmp_path / f"{n}-rank0.pt") for n in ("straight", "resumed"))
    assert straight["history"] == resumed["history"]
    a, b = (load_file(str(tmp_path / n / "model_last.safetensors")) for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_fit_subspace_equals_one_process(tmp_path):
    teacher_args = {"depth": 8, "widths": [8, 16, 16]}
    torch.manual_seed(0)
    save_weights(create_model("cifar_resnet", 10, 1, **teacher_args), tmp_path / "t.safetensors")
    config = {
        "teacher": {"name": "cifar_resnet", "args": teacher_args,
                    "weights": str(tmp_path / "t.safetensors")},
        "student": {"name": "cifar_resnet", "args": {"depth": 8, "widths": [4, 8, 8]}},
        "data": {"dataset": "digits", "subtask": "confusable"},
        "method": {"name": "subdistill", "positions": 6},
        "pairs": {"layer2": "layer2", "layer3": "layer3"},
        "train": {"eval_batch_size": 50, "progress": False},
        "run_dir": str(tmp_path / "two"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "subdistill", "fit-subspace", str(path)],
        check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("bases written to") == 1  # rank 0 prints, rank 1 does not

    one, _ = run_fit_subspaces(load_config(path, [f"run_dir={tmp_path / 'one'}"]))
    two, meta = read_bases(tmp_path / "two" / "bases.safetensors")
    assert meta["seed"] == "0" and list(two) == ["layer2", "layer3"]
    for layer, basis in one.items():
        got = two[layer]
        assert got.metadata["samples"] == basis.metadata["samples"]
        signs = torch.sign((got.U * basis.U).sum(0))
        torch.testing.assert_close(got.U * signs, basis.U, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.eigenvalues, basis.eigenvalues, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(got.mean, basis.mean, atol=1e-9, rtol=1e-9)
        assert got.energy == pytest.approx(basis.energy, rel=1e-9)


def _methods_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        weights = {}
        for name, cls in describe_methods().items():  # DDP fails on a parameter left unused
            torch.manual_seed(0)
            result = distill(TinyCNN((6, 8)), TinyCNN((4, 4)), _data(34, 0), _data(10, 1),
                             method=name, pairs=PAIRS if cls.uses_layers else None, epochs=2,
                             batch_size=8, progress=False)
            weights[name] = result.student.state_dict()
        torch.save(weights, out / f"rank{rank}.pt")


def test_every_method_trains_under_ddp(tmp_path):
    mp.spawn(_methods_worker, args=(2, _free_port(), tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() == describe_methods().keys()
    for name, state in ranks[0].items():
        assert all(torch.equal(v, ranks[1][name][k]) for k, v in state.items()), name


def _empty_share_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        one = _data(1, 0)
        one.classes = ["a", "b", "c"]
        try:  # one training image for two processes: rank 1's share of the fit is empty
            distill(TinyCNN((6, 8)), TinyCNN((4, 4)), one, _data(10, 1), pairs=PAIRS,
                    epochs=1, batch_size=8, progress=False)
        except ConfigError as err:
            (out / f"rank{rank}.txt").write_text(str(err))


def test_a_process_without_images_fails_every_process_instead_of_hanging(tmp_path):
    mp.spawn(_empty_share_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    for rank in range(2):
        assert "get no training image" in (tmp_path / f"rank{rank}.txt").read_text()
