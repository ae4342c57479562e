"""Soak: mixed load on a process pool and a thread pool while a chaos driver
breaks workers, with every request accounted for.

    python -m benchmarks.soak [--seconds 600] [--json PATH] [--csv PATH] [--png PATH]

The chaos driver, every ``--chaos-interval`` seconds, does one of: SIGKILL a worker,
send a call that times out, make a worker write a garbage frame, SIGSTOP a worker
(its health check then fails), allocate past the memory threshold, recycle a worker
by hand. Request-count recycling runs all along (``worker_max_requests``).

Every call is accounted as ok, expected_error, wrong_error, lost, hung or misrouted
(each echo carries its request id); after teardown the parent's orphans, zombies and
fd delta are counted. The headline line has the same shape as the chaos suite's.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import time
from typing import Any

import anyio
import psutil

from snakepit import open_snakepit, telemetry
from snakepit.exceptions import (
    PoolClosed,
    ProtocolError,
    QueueTimeout,
    RequestTimeout,
    WorkerCrashed,
)

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"
CONFIG = {
    "pools": [
        {
            "name": "proc",
            "adapter_module": CHAOS,
            "pool_size": 2,
            "worker_max_requests": 500,
            "worker_max_requests_jitter": 100,
            "memory_threshold_mb": 150,
            "lifecycle_check_interval": 1.0,
            "health_check_interval": 1.0,
            "health_check_timeout": 1.0,
            "queue_timeout": 10.0,
            "shutdown_timeout": 2.0,
        },
        {
            "name": "thr",
            "adapter_module": CHAOS,
            "pool_size": 1,
            "worker_profile": "thread",
            "threads_per_worker": 4,
            "worker_max_requests": 800,
            "memory_threshold_mb": 150,
            "lifecycle_check_interval": 1.0,
            "health_check_interval": 1.0,
            "health_check_timeout": 1.0,
            "queue_timeout": 10.0,
            "shutdown_timeout": 2.0,
        },
    ]
}
#: A call that resolves later than its deadline plus this is "hung".
GRACE = 5.0
CALL_DEADLINE = 15.0
ACTIONS = ("sigkill", "timeout", "garbage", "sigstop", "memory", "recycle")
#: Errors a plain echo may meet when the chaos driver hits its worker.
EXPECTED_FOR_ECHO = (WorkerCrashed, ProtocolError, QueueTimeout)


class Ledger:
    """Counts every call's outcome, and ok calls per second."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.per_second: collections.Counter[int] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.pending = 0
        self.next_id = 0
        self.started = time.monotonic()

    async def call(
        self,
        sp: Any,
        pool: str,
        command: str,
        args: dict[str, Any],
        *,
        expect: tuple[type[BaseException], ...],
        timeout: float | None = None,
        check_echo: bool = False,
    ) -> None:
        self.next_id += 1
        request_id = self.next_id
        if check_echo:
            args = {**args, "request_id": request_id}
        begin = anyio.current_time()
        deadline = timeout if timeout is not None else CALL_DEADLINE
        self.pending += 1
        try:
            result = await sp.execute(command, args, pool=pool, timeout=timeout)
        except expect:
            outcome = "expected_error"
        except PoolClosed:
            outcome = "expected_error"  # the run is ending
        except Exception as exc:  # any other type is a wrong error
            print(f"wrong error on {pool}/{command}: {type(exc).__name__}: {exc}")
            outcome = "wrong_error"
        else:
            if check_echo and result.get("request_id") != request_id:
                outcome = "misrouted"
            else:
                outcome = "ok"
                self.per_second[int(time.monotonic() - self.started)] += 1
        finally:
            self.pending -= 1
        if anyio.current_time() - begin > deadline + GRACE:
            outcome = "hung"
        self.counts[outcome] += 1


async def soak(seconds: float, chaos_interval: float, ledger: Ledger) -> dict[str, Any]:
    seen_pids: set[int] = set()

    def on_started(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen_pids.add(metadata["pid"])

    fds_before = len(os.listdir("/proc/self/fd"))
    telemetry.attach("soak-pids", ("snakepit", "worker", "started"), on_started)
    try:
        async with open_snakepit(CONFIG) as sp:
            stop_at = anyio.current_time() + seconds

            async def caller(pool: str) -> None:
                while anyio.current_time() < stop_at:
                    await ledger.call(
                        sp, pool, "echo", {}, expect=EXPECTED_FOR_ECHO, check_echo=True
                    )

            async def chaos() -> None:
                rng = random.Random(1)
                while anyio.current_time() < stop_at:
                    await anyio.sleep(chaos_interval)
                    pool = rng.choice(["proc", "thr"])
                    workers = sp.worker_stats(pool)
                    if not workers:
                        continue
                    victim = rng.choice(workers)
                    action = rng.choice(
                        [
                            "sigkill",
                            "timeout",
                            "garbage",
                            "sigstop",
                            "memory",
                            "recycle",
                        ]
                    )
                    ledger.faults[action] += 1
                    if action == "sigkill":
                        _signal(victim["pid"], signal.SIGKILL)
                    elif action == "sigstop":
                        _signal(victim["pid"], signal.SIGSTOP)
                    elif action == "recycle":
                        try:
                            await sp.recycle_worker(pool, victim["worker_id"])
                        except Exception as exc:  # the worker may be gone already
                            print(f"recycle {victim['worker_id']}: {exc}")
                    elif action == "timeout":
                        await ledger.call(
                            sp,
                            pool,
                            "sleep",
                            {"seconds": 5},
                            timeout=0.2,
                            expect=(RequestTimeout, WorkerCrashed, ProtocolError),
                        )
                    elif action == "garbage":
                        await ledger.call(
                            sp,
                            pool,
                            "write_protocol_garbage",
                            {},
                            timeout=5,
                            expect=(ProtocolError, WorkerCrashed, RequestTimeout),
                        )
                    elif action == "memory":
                        await ledger.call(
                            sp,
                            pool,
                            "alloc",
                            {"mb": 200},
                            expect=(WorkerCrashed, ProtocolError, QueueTimeout),
                        )

            async def report() -> None:
                last = 0
                while anyio.current_time() < stop_at:
                    await anyio.sleep(10)
                    now = int(time.monotonic() - ledger.started)
                    done = sum(ledger.per_second[s] for s in range(last, now))
                    rate = done / max(now - last, 1)
                    print(
                        f"t={now:4d}s ok/s={rate:8.1f} "
                        f"{dict(ledger.counts)} faults={sum(ledger.faults.values())}",
                        flush=True,
                    )
                    last = now

            async with anyio.create_task_group() as tg:
                for pool in ("proc", "thr"):
                    for _ in range(6):
                        tg.start_soon(caller, pool)
                tg.start_soon(chaos)
                tg.start_soon(report)
            stats = sp.get_stats()
            lifecycle = sp.lifecycle_stats()
    finally:
        telemetry.detach("soak-pids")
    ledger.counts["lost"] += ledger.pending
    survivors = [p for p in seen_pids if _alive(p)]
    zombies = [
        c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE
    ]
    return {
        "stats": stats,
        "lifecycle": lifecycle,
        "orphans": len(survivors),
        "zombies": len(zombies),
        "fd_delta": len(os.listdir("/proc/self/fd")) - fds_before,
        "workers_seen": len(seen_pids),
    }


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--chaos-interval", type=float, default=0.5)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--csv", metavar="PATH", help="ok calls per second")
    parser.add_argument("--png", metavar="PATH", help="plot (needs matplotlib)")
    args = parser.parse_args()
    ledger = Ledger()
    extra = anyio.run(soak, args.seconds, args.chaos_interval, ledger)
    counts = ledger.counts
    faults = sum(ledger.faults.values())
    headline = (
        f"soak: faults injected={faults} ok={counts['ok']} "
        f"expected_error={counts['expected_error']} "
        f"wrong_error={counts['wrong_error']} "
        f"lost={counts['lost']} hung={counts['hung']} misrouted={counts['misrouted']} "
        f"orphans={extra['orphans']} zombies={extra['zombies']} "
        f"fd_delta={extra['fd_delta']}"
    )
    print(f"faults by kind: {dict(ledger.faults)}")
    print(f"pool stats: {extra['stats']}")
    print(f"lifecycle: {extra['lifecycle']}")
    print(f"workers started over the run: {extra['workers_seen']}")
    seconds = sorted(ledger.per_second)
    if seconds:
        rates = [ledger.per_second[s] for s in seconds]
        print(
            f"throughput ok/s: mean {sum(rates) / len(rates):.0f}, "
            f"min {min(rates)}, max {max(rates)}"
        )
    print(headline)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("second,ok\n")
            for s in seconds:
                f.write(f"{s},{ledger.per_second[s]}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "headline": headline,
                    "counts": dict(counts),
                    "faults": dict(ledger.faults),
                    "per_second": {str(s): ledger.per_second[s] for s in seconds},
                    **extra,
                },
                f,
                indent=2,
                default=str,
            )
    if args.png:
        _plot(args.png, seconds, [ledger.per_second[s] for s in seconds])
    bad = counts["wrong_error"] + counts["lost"] + counts["hung"] + counts["misrouted"]
    bad += extra["orphans"] + extra["zombies"] + abs(extra["fd_delta"])
    raise SystemExit(1 if bad else 0)


def _plot(path: str, seconds: list[int], rates: list[int]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; no plot")
        return
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(seconds, rates, linewidth=0.8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("ok calls per second")
    ax.set_title("snakepit soak: throughput under chaos (process + thread pool)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
