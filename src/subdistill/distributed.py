"""Helpers for runs launched by ``torchrun`` (DistributedDataParallel), free of training logic.

``torchrun`` starts one process per device and gives each RANK, WORLD_SIZE and LOCAL_RANK in
its environment. :func:`process_group` initialises the default process group from them; while
none is initialised (no torchrun, or one process) every helper here behaves as for a single
process and does no communication.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset


@dataclass(frozen=True)
class Launch:
    """This process's place in a ``torchrun`` launch."""

    rank: int
    world_size: int
    local_rank: int


def launch_environment() -> Launch | None:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK, or None when they are not set."""
    if "WORLD_SIZE" not in os.environ:
        return None
    rank = int(os.environ.get("RANK", "0"))
    return Launch(rank, int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", rank)))


def is_distributed() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def local_device(name: str | torch.device) -> torch.device:
    """The device a config names; a CUDA device becomes this process's GPU (``cuda:LOCAL_RANK``)
    in a process group."""
    device = torch.device(name)
    if device.type != "cuda" or not is_distributed():
        return device
    launch = launch_environment()
    index = launch.local_rank if launch is not None else rank() % torch.cuda.device_count()
    return torch.device("cuda", index)


@contextmanager
def process_group(device: str | torch.device = "cpu",
                  timeout: timedelta = timedelta(hours=2)) -> Iterator[None]:
    """Initialise the default process group from torchrun's environment for the block (NCCL
    when ``device`` is a CUDA device, gloo otherwise) and destroy it afterwards. Without
    torchrun, with one process, or with a group already initialised, nothing is done.

    ``timeout`` bounds every wait, e.g. while rank 0 alone builds a teacher-output cache."""
    launch = launch_environment()
    if launch is None or launch.world_size < 2 or dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(launch.local_rank)
    dist.init_process_group(backend, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the group arrives here."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a file); the others run it after it finished."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def all_reduce_sum(tensors: Sequence[Tensor]) -> None:
    """Replace every tensor by its sum over the process group, in place (one collective per
    dtype and device)."""
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        for tensor, part in zip(group, flat.split([t.numel() for t in group])):
            tensor.copy_(part.view_as(tensor))


def broadcast_buffers(module: nn.Module) -> None:
    """Give every process rank 0's buffers of ``module`` (BatchNorm statistics, ...)."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def shard(dataset: Dataset) -> Dataset:
    """This process's disjoint share of ``dataset``: items rank, rank + world_size, ... (no
    padding, so the shares of all processes together are exactly the dataset)."""
    if not is_distributed():
        return dataset
    return Subset(dataset, range(rank(), len(dataset), world_size()))  # type: ignore[arg-type]


def even_shard(order: Tensor, rank: int = 0, world_size: int = 1) -> Tensor:
    """``rank``'s share of an epoch's sample ``order`` as DistributedSampler makes it: the order
    is padded by repeating its start to a multiple of ``world_size``, so every process gets the
    same number of samples (and of optimisation steps)."""
    if world_size == 1 or len(order) == 0:
        return order
    total = -(-len(order) // world_size) * world_size
    padded = order.repeat(-(-total // len(order)))[:total]
    return padded[rank::world_size]
