"""Scoring spread over processes, GPUs and hosts with torch.distributed (launched by torchrun).

Each candidate's recoverability is an independent training run, so candidates are sharded
over the ranks (round-robin over the candidates still to score, in the model's order:
deterministic), each rank scores its share on its own device (``cuda:LOCAL_RANK`` on GPUs;
on CPUs the machine's cores split between the processes on it), and the results are
gathered so that every rank holds all of them. Rank 0 alone then measures latency (on the
device the user named, with the other ranks idle), selects, recovers, evaluates and writes.

Without torchrun (no ``WORLD_SIZE`` above 1 in the environment) the group is one process
and nothing changes. A block's score does not depend on which rank or in which order it
was computed: its training is seeded by its name, and the teacher's targets are the same on
every rank (bit-identical on CPU at the same thread count).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from .errors import UsageError

log = logging.getLogger(__name__)
_machine_threads: list[int] = []  # torch's thread count before the split, for rank 0's timing
TIMEOUT_ENV = "PRACTISE_DIST_TIMEOUT_S"  # how long a rank waits for the others at a gather


@dataclass(frozen=True)
class ScoringGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[str]) -> list[str]:
        """This rank's share of ``items``: every world_size-th, starting at its rank."""
        return items[self.rank::self.world_size]

    def device(self, device: torch.device) -> torch.device:
        """Where this rank scores: its own GPU when the run is on CUDA."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def gather(self, value) -> list:
        """``value`` of every rank, in rank order (every rank gets the list)."""
        if not self.distributed:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def check_ranks_agree(group: ScoringGroup, description: dict) -> None:
    """Every rank must run the same job on the same data: ``description`` (arguments, file
    fingerprints) is gathered, and a rank that differs from rank 0 stops every rank, before
    any work, with one UsageError naming the first difference."""
    if not group.distributed:
        return
    described = group.gather(description)
    for rank, other in enumerate(described[1:], 1):
        differing = sorted(k for k in set(other) | set(described[0]) if other.get(k) != described[0].get(k))
        if differing:
            key = differing[0]
            raise UsageError(f"the ranks of this torchrun job differ: rank {rank}'s {key} is "
                             f"{str(other.get(key))[:80]!r}, rank 0's {str(described[0].get(key))[:80]!r}; "
                             "start every rank with the same arguments and data")


def path_fingerprint(path: str | os.PathLike | None) -> str | None:
    """What a file or folder holds, cheaply: names and sizes, and the first and last MiB of
    each file (the same on every host that has the same data, whatever its mtimes)."""
    import hashlib
    from pathlib import Path

    if path is None:
        return None
    root = Path(path)
    if not root.exists():
        return f"missing:{path}"
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files[:100_000]:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root) if file != root else file.name}:{size}".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 2 << 20:
                handle.seek(-(1 << 20), os.SEEK_END)
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def current_group() -> ScoringGroup:
    """The running process group (torchrun's environment names the local rank), or one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return ScoringGroup()
    return ScoringGroup(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                        int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))


def init_from_environment(timeout_s: float | None = None) -> ScoringGroup:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl with
    CUDA) and split this machine's CPU threads between its processes; one process: nothing."""
    if dist.is_available() and dist.is_initialized():
        return current_group()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ScoringGroup()
    if not dist.is_available():
        raise UsageError("WORLD_SIZE is set (torchrun) but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    seconds = timeout_s or float(os.environ.get(TIMEOUT_ENV, 1800))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
    group = current_group()
    if not cuda:
        _machine_threads.append(torch.get_num_threads())
        torch.set_num_threads(max(1, torch.get_num_threads() // group.local_world_size))
    log.info("rank %d of %d (local %d of %d) on %s, %d CPU threads", group.rank, group.world_size, group.local_rank,
             group.local_world_size, "cuda" if cuda else "cpu", torch.get_num_threads())
    return group


def machine_threads() -> None:
    """Give this process the whole machine's CPU threads again (rank 0, timing alone)."""
    if _machine_threads:
        torch.set_num_threads(_machine_threads[0])


def finish(completed: bool = True) -> None:
    """Leave the process group. After a completed job every rank first waits for the others: a
    rank tearing down while a peer still holds an open gloo pair can abort that peer ("terminate
    called without an active exception"). After a failure it leaves at once, so its peers fail
    fast on their next collective instead of waiting at a barrier it never matches."""
    if dist.is_available() and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()
