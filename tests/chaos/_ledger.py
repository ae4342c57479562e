"""Outcome accounting for the chaos suite (RELIABILITY.md §0).

A :class:`Ledger` wraps every request a chaos test makes and classifies how it
ended:

- ``ok``: it returned the right value, and an echoed value carries its own
  request id;
- ``expected_error``: it raised one of the exception types the scenario
  documents (or was cancelled by the caller on purpose);
- ``wrong_error``: it raised anything else, or succeeded where it had to fail;
- ``misrouted``: it returned a value meant for another request (an echo with
  another request id, or a value failing the test's check);
- ``hung``: it resolved, but later than ``deadline + GRACE``;
- ``lost``: it never resolved: still pending at teardown, or given up
  ``LOST_AFTER`` seconds past ``deadline + GRACE``.

The per-test fixture (``conftest.py``) adds the process hygiene counters
(``orphans``, ``zombies``, ``fd_delta``) and sums every ledger into the session
headline.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import attrs
import psutil
import pytest
from anyio.abc import TaskGroup

from snakepit.config import PoolConfig

__all__ = (
    "BAD",
    "CHAOS",
    "COUNTERS",
    "ENV_KEY",
    "GRACE",
    "PROMPT",
    "RESTART",
    "Ledger",
    "REPORT_KEY",
    "ChaosHeadline",
    "Record",
    "Totals",
    "chaos_config",
    "open_fds",
    "find_orphans",
    "reap_zombies",
)

CHAOS = "snakepit.adapters.chaos:ChaosAdapter"

#: Seconds of tolerance past a call's deadline before it counts as hung (the
#: catalogue's "kill-escalation time + 1 s"; deadlines that include a kill
#: escalation say so themselves).
GRACE = 1.0
#: A fault's outcome must arrive "at once": within this many seconds.
PROMPT = 2.0
#: A call that may wait for a replacement worker (spawn plus handshake).
RESTART = 5.0
#: Past ``deadline + GRACE``, a call still unresolved is given up as lost.
LOST_AFTER = 5.0

#: The variable every worker (and grandchild) started by a chaos test inherits:
#: its value names the test, so leftovers are found by environment.
ENV_KEY = "SNAKEPIT_CHAOS_TEST"

OUTCOMES = ("ok", "expected_error", "wrong_error", "lost", "hung", "misrouted")
HYGIENE = ("orphans", "zombies", "fd_delta")
COUNTERS = ("faults", *OUTCOMES, *HYGIENE)
BAD = ("wrong_error", "lost", "hung", "misrouted", *HYGIENE)

_ids = itertools.count(1)


def chaos_config(
    profile: str, size: int = 1, *, threads: int = 4, **options: Any
) -> PoolConfig:
    """A pool of the chaos adapter on *profile* ("process" or "thread")."""
    if profile == "thread":
        options.setdefault("threads_per_worker", threads)
    return PoolConfig(
        adapter_module=CHAOS, pool_size=size, worker_profile=profile, **options
    )


# --- Records ---


@attrs.define(eq=False)
class Record:
    """One request and what became of it (``outcome`` is None while pending)."""

    rid: int
    label: str
    expect: tuple[type[BaseException], ...]
    deadline: float
    ok_allowed: bool
    outcome: str | None = None
    value: Any = None
    error: BaseException | None = None
    elapsed: float | None = None
    note: str = ""
    #: Chunks a stream delivered (before its error, if it failed).
    chunks: list[Any] = attrs.Factory(list)
    #: The caller's cancel scope while the request runs (see :meth:`cancel`).
    scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        """Cancel the request as its caller would; that is then its expected
        outcome."""
        assert self.scope is not None, "the request has not started"
        self.scope.cancel()

    def describe(self) -> str:
        what = (
            f"{type(self.error).__name__}: {self.error}"
            if self.error is not None
            else repr(self.value)[:200]
        )
        took = "?" if self.elapsed is None else f"{self.elapsed:.3f}s"
        expected = ", ".join(e.__name__ for e in self.expect) or "a value"
        return (
            f"#{self.rid} {self.label}: {self.outcome or 'pending'} after {took} "
            f"(deadline {self.deadline}s, expected {expected}): {what}"
            + (f" [{self.note}]" if self.note else "")
        )


def _passes(check: Callable[[Any], object], subject: Any) -> tuple[bool, str]:
    try:
        return bool(check(subject)), ""
    except Exception as exc:  # a check that raises is a check that fails
        return False, f"check raised {type(exc).__name__}: {exc}"


# --- The ledger ---


class Ledger:
    """The requests of one test, each classified as it resolves."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: list[Record] = []
        self.faults = 0
        self.hygiene = dict.fromkeys(HYGIENE, 0)
        self.hygiene_notes: list[str] = []
        #: Pids to check for orphans at teardown, besides the pool's workers.
        self.pids: set[int] = set()

    # --- Faults ---

    def fault(self, count: int = 1) -> None:
        """Count *count* injected faults."""
        self.faults += count

    def track(self, *pids: int) -> None:
        """Check these processes for orphans at teardown (grandchildren...)."""
        self.pids.update(pids)

    # --- Requests ---

    def _new(
        self,
        label: str,
        expect: type[BaseException] | tuple[type[BaseException], ...],
        deadline: float,
        ok_allowed: bool | None,
    ) -> Record:
        expected = expect if isinstance(expect, tuple) else (expect,)
        record = Record(
            rid=next(_ids),
            label=label,
            expect=expected,
            deadline=deadline,
            ok_allowed=not expected if ok_allowed is None else ok_allowed,
        )
        self.records.append(record)
        return record

    def _call_parts(
        self,
        pool: Any,
        command: str,
        args: dict[str, Any] | None,
        *,
        expect: Any,
        deadline: float,
        ok_allowed: bool | None,
        check: Callable[[Any], object] | None,
        id_arg: str | None,
        timeout: float | None,
        session_id: str | None,
    ) -> tuple[Record, Callable[[], Awaitable[Any]], Callable[[Any], object] | None]:
        record = self._new(command, expect, deadline, ok_allowed)
        call_args = dict(args or {})
        if id_arg is None and command == "echo":
            id_arg = "request_id"
        if id_arg is not None:
            call_args[id_arg] = record.rid
            if check is None and command == "echo":

                def check(value: Any, rid: int = record.rid) -> bool:
                    return isinstance(value, dict) and value.get("request_id") == rid

            elif check is None:

                def check(value: Any, rid: int = record.rid) -> bool:
                    return bool(value == rid)

        async def run() -> Any:
            return await pool.execute(
                command, call_args, timeout=timeout, session_id=session_id
            )

        return record, run, check

    async def call(
        self,
        pool: Any,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        expect: Any = (),
        check: Callable[[Any], object] | None = None,
        check_error: Callable[[Any], object] | None = None,
        deadline: float = PROMPT,
        ok_allowed: bool | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
        cancel_after: float | None = None,
        id_arg: str | None = None,
    ) -> Record:
        """Run ``pool.execute(command, args)`` and classify its outcome.

        An ``echo`` gets the request id as ``request_id`` and must return it in
        its reply; another command gets it as *id_arg* and must return it. *check* tests a value, *check_error* an
        expected exception. With *cancel_after*, the caller cancels the call
        after that many seconds, and a cancellation is the expected outcome.
        """
        record, run, check = self._call_parts(
            pool,
            command,
            args,
            expect=expect,
            deadline=deadline,
            ok_allowed=ok_allowed,
            check=check,
            id_arg=id_arg,
            timeout=timeout,
            session_id=session_id,
        )
        await self._settle(record, run, check, check_error, cancel_after)
        return record

    def spawn(
        self,
        tg: TaskGroup,
        pool: Any,
        command: str,
        args: dict[str, Any] | None = None,
        **options: Any,
    ) -> Record:
        """Start :meth:`call` in *tg*; the record exists (pending) at once."""
        check_error = options.pop("check_error", None)
        cancel_after = options.pop("cancel_after", None)
        options.setdefault("expect", ())
        options.setdefault("deadline", PROMPT)
        options.setdefault("ok_allowed", None)
        options.setdefault("check", None)
        options.setdefault("id_arg", None)
        options.setdefault("timeout", None)
        options.setdefault("session_id", None)
        record, run, check = self._call_parts(pool, command, args, **options)
        tg.start_soon(self._settle, record, run, check, check_error, cancel_after)
        return record

    async def echoes(self, pool: Any, count: int = 3, **options: Any) -> list[Record]:
        """*count* plain echo calls, one after another (each must be ok)."""
        options.setdefault("deadline", RESTART)
        return [await self.call(pool, "echo", **options) for _ in range(count)]

    async def stream(
        self,
        pool: Any,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        expect: Any = (),
        check: Callable[[list[Any]], object] | None = None,
        check_error: Callable[[Any], object] | None = None,
        deadline: float = PROMPT,
        ok_allowed: bool | None = None,
    ) -> Record:
        """Consume ``pool.execute_stream(command, args)``; *check* tests the
        chunks delivered (also those delivered before an expected error)."""
        record = self._new(command, expect, deadline, ok_allowed)

        async def run() -> list[Any]:
            async with pool.execute_stream(command, args) as chunks:
                async for chunk in chunks:
                    record.chunks.append(chunk)
            return record.chunks

        def check_failure(exc: BaseException) -> bool:
            if check is not None and not _passes(check, record.chunks)[0]:
                return False
            return check_error is None or _passes(check_error, exc)[0]

        await self._settle(record, run, check, check_failure, None)
        return record

    async def run(
        self,
        label: str,
        operation: Callable[[], Awaitable[Any]],
        *,
        expect: Any = (),
        check: Callable[[Any], object] | None = None,
        check_error: Callable[[Any], object] | None = None,
        deadline: float = PROMPT,
        ok_allowed: bool | None = None,
    ) -> Record:
        """Account any operation as a request (opening a pool, a subprocess...)."""
        record = self._new(label, expect, deadline, ok_allowed)
        await self._settle(record, operation, check, check_error, None)
        return record

    def account(
        self,
        label: str,
        *,
        value: Any = None,
        error_type: str | None = None,
        elapsed: float,
        expect: Any = (),
        check: Callable[[Any], object] | None = None,
        deadline: float = PROMPT,
    ) -> Record:
        """Account a request whose outcome was observed elsewhere (in a child
        process): its value, or the name of the exception type it raised."""
        record = self._new(label, expect, deadline, None)
        record.elapsed = elapsed
        if elapsed > deadline + GRACE:
            self._resolve(record, "hung", value=value, note=f"raised {error_type}")
        elif error_type is None:
            if not record.ok_allowed:
                self._resolve(record, "wrong_error", value=value, note="no error")
            elif check is not None and not _passes(check, value)[0]:
                self._resolve(record, "misrouted", value=value, note="failed its check")
            else:
                self._resolve(record, "ok", value=value)
        elif error_type in {e.__name__ for e in record.expect}:
            self._resolve(record, "expected_error", note=f"raised {error_type}")
        else:
            self._resolve(record, "wrong_error", note=f"raised {error_type}")
        return record

    async def _settle(
        self,
        record: Record,
        operation: Callable[[], Awaitable[Any]],
        check: Callable[[Any], object] | None,
        check_error: Callable[[Any], object] | None,
        cancel_after: float | None,
    ) -> None:
        begin = anyio.current_time()
        limit = max(record.deadline, cancel_after or 0.0) + GRACE + LOST_AFTER
        value: Any = None
        error: BaseException | None = None
        cancelled = False
        with anyio.move_on_after(limit) as bound:
            try:
                with anyio.CancelScope() as record.scope:
                    if cancel_after is not None:
                        record.scope.deadline = begin + cancel_after
                    value = await operation()
                cancelled = record.scope.cancelled_caught
            except Exception as exc:
                error = exc
            finally:
                record.scope = None
        # An outside cancellation (the test's own fail_after) propagated above and
        # left the record pending: it is counted lost at teardown.
        record.elapsed = anyio.current_time() - begin
        if bound.cancelled_caught:
            self._resolve(record, "lost", note=f"unresolved after {limit:.1f}s")
            return
        if record.elapsed > record.deadline + GRACE:
            self._resolve(record, "hung", value=value, error=error)
        elif cancelled:
            self._resolve(record, "expected_error", note="cancelled by its caller")
        elif error is None:
            passed, why = (True, "") if check is None else _passes(check, value)
            if not record.ok_allowed:
                self._resolve(record, "wrong_error", value=value, note="no error")
            elif not passed:
                note = why or "failed its check"
                self._resolve(record, "misrouted", value=value, note=note)
            else:
                self._resolve(record, "ok", value=value)
        elif isinstance(error, record.expect):
            passed, why = (
                (True, "") if check_error is None else _passes(check_error, error)
            )
            outcome = "expected_error" if passed else "wrong_error"
            note = "" if passed else why or "the error failed its check"
            self._resolve(record, outcome, error=error, note=note)
        else:
            self._resolve(record, "wrong_error", error=error)

    @staticmethod
    def _resolve(
        record: Record,
        outcome: str,
        *,
        value: Any = None,
        error: BaseException | None = None,
        note: str = "",
    ) -> None:
        record.outcome = outcome
        record.value = value
        record.error = error
        record.note = note

    # --- Totals ---

    def close(self) -> None:
        """Count every request still pending as lost."""
        for record in self.records:
            if record.outcome is None:
                record.outcome = "lost"
                record.note = record.note or "still pending at teardown"

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTERS, 0)
        counts["faults"] = self.faults
        for record in self.records:
            if record.outcome is not None:
                counts[record.outcome] += 1
        counts.update(self.hygiene)
        return counts

    def check(self) -> None:
        """Raise AssertionError if a request so far ended badly (for tests that
        must fail in their body, such as those marked xfail)."""
        bad = [r.describe() for r in self.records if r.outcome in BAD]
        assert not bad, "bad outcomes:\n  " + "\n  ".join(bad)

    def problems(self) -> list[str]:
        """One line per bad outcome and hygiene failure."""
        lines = [
            r.describe() for r in self.records if r.outcome in BAD or r.outcome is None
        ]
        return lines + self.hygiene_notes


#: The key of the counts a chaos test leaves in its report's ``user_properties``.
REPORT_KEY = "snakepit-chaos"


@attrs.define
class Totals:
    """The session's sums: every chaos test's ledger, and apart those of tests
    marked xfail (known bugs, kept out of the headline)."""

    counts: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(COUNTERS, 0))
    known: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(COUNTERS, 0))
    tests: int = 0
    offenders: list[str] = attrs.Factory(list)

    def add(self, name: str, counts: dict[str, int], *, known: bool) -> None:
        """Add one test's ledger counts (``Ledger.counts()``)."""
        target = self.known if known else self.counts
        for key, value in counts.items():
            target[key] += value
        self.tests += 1
        if not known and any(counts[k] for k in BAD):
            self.offenders.append(name)

    def bad(self) -> int:
        return sum(self.counts[k] for k in BAD)

    def headline(self) -> str:
        c = self.counts
        return (
            f"chaos: faults injected={c['faults']} ok={c['ok']} "
            f"expected_error={c['expected_error']} wrong_error={c['wrong_error']} "
            f"lost={c['lost']} hung={c['hung']} misrouted={c['misrouted']} "
            f"orphans={c['orphans']} zombies={c['zombies']} fd_delta={c['fd_delta']}"
        )

    def known_line(self) -> str | None:
        k = self.known
        if not any(k.values()):
            return None
        shown = " ".join(f"{key}={k[key]}" for key in COUNTERS)
        return f"chaos (xfail, known bugs, not in the headline): {shown}"


class ChaosHeadline:
    """A pytest plugin summing the chaos tests' reports into the headline.

    Registered by the root conftest: with xdist, only the controller sees every
    report, and it collects nothing (so never loads ``tests/chaos/conftest.py``).
    A bad counter also makes the session's exit status a failure.
    """

    def __init__(self) -> None:
        self.totals = Totals()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            if key == REPORT_KEY:
                self.totals.add(report.nodeid, value["counts"], known=value["known"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.totals.bad() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        totals = self.totals
        if not totals.tests:
            return
        terminalreporter.write_sep("=", "chaos accounting")
        terminalreporter.write_line(totals.headline())
        known = totals.known_line()
        if known is not None:
            terminalreporter.write_line(known)
        for name in totals.offenders:
            terminalreporter.write_line(f"chaos: bad outcomes in {name}")


# --- Process hygiene ---


def open_fds() -> dict[int, str]:
    """The test process's open file descriptors, each with what it points at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir itself used, closed by now
    return fds


def reap_zombies() -> list[int]:
    """Return the pids of ``<defunct>`` children of the test process, and reap
    them (so one test's leak does not count against the next)."""
    found = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def find_orphans(
    token: str, tracked: Iterable[psutil.Process], settle: float = 0.5
) -> list[str]:
    """Kill and describe the processes a test left alive: those it tracked, and
    any whose environment carries its *token*. Processes already on their way
    out get *settle* seconds to exit first."""
    me = os.getpid()
    suspects = {p.pid: p for p in tracked if p.pid != me and _alive(p)}
    for proc in psutil.process_iter():
        if proc.pid == me or proc.pid in suspects:
            continue
        try:
            if proc.environ().get(ENV_KEY) == token and _alive(proc):
                suspects[proc.pid] = proc
        except psutil.Error:
            continue
    alive = list(suspects.values())
    give_up = time.monotonic() + settle
    while alive and time.monotonic() < give_up:
        time.sleep(0.02)  # waiting on process exit, bounded
        alive = [p for p in alive if _alive(p)]
    described = []
    for proc in alive:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            os.kill(proc.pid, signal.SIGKILL)
        except (psutil.Error, ProcessLookupError):
            pass
    return described
