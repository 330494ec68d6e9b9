"""Running a function on several processes joined by a gloo group (the distributed-reduction tests)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn: Callable[[int, int], Any], rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        queue.put((rank, fn(rank, world)))
    finally:
        dist.destroy_process_group()


def run_on_gloo(fn: Callable[[int, int], Any], world: int = 2, timeout: float = 120) -> list:
    """``fn(rank, world)`` in ``world`` spawned processes of one gloo group; the results by rank.

    ``fn`` must be importable by the children (a module-level function of a test module).
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(fn, rank, world, port, queue)) for rank in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [results[rank] for rank in range(world)]
