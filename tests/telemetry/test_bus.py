"""Tests for the bus: attach, detach, list_handlers, execute, handler failures."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from snakepit import telemetry
from snakepit.exceptions import HandlerAlreadyAttached, SnakepitError

FAILURE = ("snakepit", "telemetry", "handler_failure")


class Recorder:
    """A handler that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, event, measurements, metadata, config) -> None:
        self.calls.append((event, dict(measurements), dict(metadata), config))


def boom(event, measurements, metadata, config) -> None:
    raise ZeroDivisionError("boom")


# --- attach / execute ---


def test_execute_calls_the_handler_with_event_measurements_metadata_config():
    rec = Recorder()
    telemetry.attach("t", ("app", "ready"), rec, config={"k": 1})
    telemetry.execute(("app", "ready"), {"n": 2}, {"who": "me"})
    assert rec.calls == [(("app", "ready"), {"n": 2}, {"who": "me"}, {"k": 1})]


def test_execute_without_metadata_passes_an_empty_read_only_mapping():
    seen = []
    telemetry.attach("t", ("app",), lambda e, m, md, c: seen.append(md))
    telemetry.execute(("app",), {"n": 1})
    assert seen == [{}]
    with pytest.raises(TypeError):
        seen[0]["x"] = 1


def test_execute_with_nothing_attached_is_a_no_op():
    assert telemetry.execute(("nobody", "listens"), {"n": 1}, {"a": 1}) is None


def test_handlers_only_see_their_exact_event():
    rec = Recorder()
    telemetry.attach("t", ("app", "a"), rec)
    telemetry.execute(("app",), {})
    telemetry.execute(("app", "a", "b"), {})
    telemetry.execute(("app", "b"), {})
    assert rec.calls == []


def test_every_handler_of_an_event_runs():
    recs = [Recorder() for _ in range(3)]
    for i, rec in enumerate(recs):
        telemetry.attach(f"t{i}", ("app",), rec)
    telemetry.execute(("app",), {"n": 1})
    assert [len(r.calls) for r in recs] == [1, 1, 1]


def test_duplicate_id_raises_and_keeps_the_first_handler():
    first, second = Recorder(), Recorder()
    telemetry.attach("dup", ("app", "a"), first)
    with pytest.raises(HandlerAlreadyAttached, match="'dup' is already attached"):
        telemetry.attach("dup", ("app", "b"), second)
    with pytest.raises(HandlerAlreadyAttached):
        telemetry.attach_many("dup", [("app", "c")], second)
    telemetry.execute(("app", "a"), {})
    telemetry.execute(("app", "b"), {})
    assert len(first.calls) == 1
    assert second.calls == []
    assert issubclass(HandlerAlreadyAttached, SnakepitError)
    assert issubclass(HandlerAlreadyAttached, ValueError)


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        (["app", "a"], TypeError, "must be a tuple of strings"),
        ("app.a", TypeError, "must be a tuple of strings"),
        ((), ValueError, "must not be empty"),
        (("app", 1), TypeError, "every part must be a str"),
        (("app", ""), ValueError, "every part must be a non-empty str"),
    ],
)
def test_attach_rejects_a_bad_event_name(event, error, match):
    with pytest.raises(error, match=match):
        telemetry.attach("t", event, Recorder())
    assert telemetry.list_handlers() == []


def test_attach_rejects_a_bad_id_or_handler():
    with pytest.raises(TypeError, match="handler_id must be a str"):
        telemetry.attach(1, ("app",), Recorder())
    with pytest.raises(TypeError, match="handler must be callable"):
        telemetry.attach("t", ("app",), "not callable")
    assert telemetry.list_handlers() == []


# --- attach_many / detach / list_handlers ---


def test_attach_many_attaches_one_id_to_several_events_and_detach_removes_all():
    rec = Recorder()
    events = [("app", "a"), ("app", "b"), ("other",)]
    telemetry.attach_many("many", events, rec, config=7)
    for event in events:
        telemetry.execute(event, {})
    assert [call[0] for call in rec.calls] == events
    assert {call[3] for call in rec.calls} == {7}
    assert [h.event for h in telemetry.list_handlers()] == events
    assert telemetry.detach("many") is True
    for event in events:
        telemetry.execute(event, {})
    assert len(rec.calls) == 3
    assert telemetry.list_handlers() == []


def test_attach_many_attaches_a_repeated_event_once():
    rec = Recorder()
    telemetry.attach_many("many", [("app",), ("app",)], rec)
    telemetry.execute(("app",), {})
    assert len(rec.calls) == 1


def test_attach_many_rejects_no_events_and_a_single_name():
    with pytest.raises(ValueError, match="at least one event"):
        telemetry.attach_many("t", [], Recorder())
    with pytest.raises(TypeError, match="use attach"):
        telemetry.attach_many("t", ("app", "a"), Recorder())
    with pytest.raises(ValueError, match="must not be empty"):
        telemetry.attach_many("t", [("app",), ()], Recorder())
    assert telemetry.list_handlers() == []


def test_detach_says_whether_it_was_attached():
    telemetry.attach("t", ("app",), Recorder())
    assert telemetry.detach("t") is True
    assert telemetry.detach("t") is False
    assert telemetry.detach("never") is False
    telemetry.attach("t", ("app",), Recorder())  # the id is free again


def test_list_handlers_matches_by_prefix():
    fn = Recorder()
    telemetry.attach("ab", ("a", "b"), fn, config="cfg")
    telemetry.attach("abc", ("a", "b", "c"), fn)
    telemetry.attach("ax", ("a", "x"), fn)
    telemetry.attach("b", ("b",), fn)

    def ids(prefix=()):
        return [h.id for h in telemetry.list_handlers(prefix)]

    assert ids() == ["ab", "abc", "ax", "b"]
    assert ids(("a",)) == ["ab", "abc", "ax"]
    assert ids(("a", "b")) == ["ab", "abc"]
    assert ids(("a", "b", "c")) == ["abc"]
    assert ids(("a", "b", "c", "d")) == []
    assert ids(("ab",)) == []
    assert telemetry.list_handlers(("a", "b"))[0] == telemetry.HandlerInfo(
        "ab", ("a", "b"), fn, "cfg"
    )
    with pytest.raises(TypeError, match="prefix must be a tuple"):
        telemetry.list_handlers(["a"])


# --- failing handlers ---


def test_a_failing_handler_is_detached_logged_and_reported(caplog):
    before, after, failures = Recorder(), Recorder(), Recorder()
    telemetry.attach("before", ("app",), before)
    telemetry.attach("bad", ("app",), boom)
    telemetry.attach("after", ("app",), after)
    telemetry.attach("failures", FAILURE, failures)

    with caplog.at_level(logging.ERROR, logger="snakepit.telemetry"):
        telemetry.execute(("app",), {"n": 1}, {"a": 1})  # does not raise
        telemetry.execute(("app",), {"n": 2}, {"a": 2})

    assert len(before.calls) == len(after.calls) == 2
    assert [h.id for h in telemetry.list_handlers(("app",))] == ["before", "after"]
    [record] = [r for r in caplog.records if r.name == "snakepit.telemetry"]
    assert "'bad'" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)
    [(event, measurements, metadata, _)] = failures.calls
    assert event == FAILURE
    assert measurements == {"count": 1}
    assert metadata.keys() == {"handler_id", "event", "error"}
    assert metadata["handler_id"] == "bad"
    assert metadata["event"] == ("app",)
    assert isinstance(metadata["error"], ZeroDivisionError)


def test_a_handler_attached_to_many_events_is_detached_from_all_on_failure():
    telemetry.attach_many("bad", [("app", "a"), ("app", "b")], boom)
    with telemetry.capture_events(FAILURE) as events:
        telemetry.execute(("app", "a"), {})
        telemetry.execute(("app", "b"), {})
    assert telemetry.list_handlers() == []
    assert [e.event for e in events.named(FAILURE)] == [FAILURE]


def test_a_failing_failure_handler_is_detached_without_recursion(caplog):
    reported = Recorder()
    telemetry.attach("bad", ("app",), boom)
    telemetry.attach("bad-failure-handler", FAILURE, boom)
    telemetry.attach("reported", FAILURE, reported)

    with caplog.at_level(logging.ERROR, logger="snakepit.telemetry"):
        telemetry.execute(("app",), {})

    assert [h.id for h in telemetry.list_handlers()] == ["reported"]
    # One report, for "bad"; the failure handler's own failure is only logged.
    assert [call[2]["handler_id"] for call in reported.calls] == ["bad"]
    logged = [r.getMessage() for r in caplog.records if r.name == "snakepit.telemetry"]
    assert len(logged) == 2
    assert "'bad'" in logged[0]
    assert "'bad-failure-handler'" in logged[1]


class Stop(BaseException):
    pass


def test_base_exceptions_are_not_swallowed():
    def stop(event, measurements, metadata, config):
        raise Stop

    telemetry.attach("stop", ("app",), stop)
    with pytest.raises(Stop):
        telemetry.execute(("app",), {})
    assert [h.id for h in telemetry.list_handlers()] == ["stop"]


def test_a_handler_failing_in_several_threads_at_once_is_reported_once():
    n = 4
    barrier = threading.Barrier(n, timeout=10)

    def fail_together(event, measurements, metadata, config):
        barrier.wait()
        raise ValueError("together")

    reports = Recorder()
    telemetry.attach("together", ("app",), fail_together)
    telemetry.attach("reports", FAILURE, reports)
    threads = [
        threading.Thread(target=telemetry.execute, args=(("app",), {}))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert len(reports.calls) == 1


def test_a_failure_does_not_detach_a_new_handler_with_the_same_id():
    def fail_then_reattach(event, measurements, metadata, config):
        raise ValueError

    telemetry.attach("same", ("app",), fail_then_reattach)
    telemetry.execute(("app",), {})
    rec = Recorder()
    telemetry.attach("same", ("app",), rec)
    telemetry.execute(("app",), {})
    assert len(rec.calls) == 1
    assert [h.id for h in telemetry.list_handlers()] == ["same"]


# --- threads ---


def test_concurrent_attach_detach_and_execute_lose_no_handler():
    n_threads, per_thread = 8, 100
    barrier = threading.Barrier(n_threads + 2, timeout=10)
    stop = threading.Event()
    calls = Counter()
    lock = threading.Lock()

    def handler(event, measurements, metadata, config):
        with lock:
            calls[config] += 1

    def churn(t):
        barrier.wait()
        for i in range(per_thread):
            telemetry.attach(f"{t}-{i}", ("app", str(i % 3)), handler, config=t)
            if i % 2:
                assert telemetry.detach(f"{t}-{i}")

    def emit():
        barrier.wait()
        while not stop.is_set():
            for i in range(3):
                telemetry.execute(("app", str(i)), {"n": 1})

    emitters = [threading.Thread(target=emit) for _ in range(2)]
    workers = [threading.Thread(target=churn, args=(t,)) for t in range(n_threads)]
    for th in emitters + workers:
        th.start()
    for th in workers:
        th.join(timeout=30)
    stop.set()
    for th in emitters:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in emitters + workers)

    expected = {f"{t}-{i}" for t in range(n_threads) for i in range(0, per_thread, 2)}
    assert {h.id for h in telemetry.list_handlers()} == expected
    assert len(telemetry.list_handlers()) == len(expected)
    for i in range(3):
        handlers = telemetry.list_handlers(("app", str(i)))
        assert {h.id for h in handlers} == {
            x for x in expected if int(x.split("-")[1]) % 3 == i
        }
    calls.clear()
    telemetry.execute(("app", "0"), {})
    assert sum(calls.values()) == len(telemetry.list_handlers(("app", "0")))


# --- model-based ---

IDS = st.sampled_from(["h1", "h2", "h3", "h4"])
NAMES = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"])).map(tuple),
    min_size=1,
    max_size=3,
)


class RegistryMachine(RuleBasedStateMachine):
    """The registry against a dict model: id -> (events, handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, list[tuple[str, ...]]] = {}
        self.calls: Counter[tuple[str, tuple[str, ...]]] = Counter()

    def _handler(self, event, measurements, metadata, config):
        self.calls[(config, event)] += 1

    @rule(handler_id=IDS, events=NAMES)
    def attach(self, handler_id, events):
        if handler_id in self.model:
            with pytest.raises(HandlerAlreadyAttached):
                telemetry.attach_many(handler_id, events, self._handler, handler_id)
        else:
            telemetry.attach_many(handler_id, events, self._handler, handler_id)
            self.model[handler_id] = list(dict.fromkeys(events))

    @rule(handler_id=IDS)
    def detach(self, handler_id):
        assert telemetry.detach(handler_id) is (
            self.model.pop(handler_id, None) is not None
        )

    @rule(event=NAMES.map(lambda names: names[0]))
    def execute(self, event):
        self.calls.clear()
        telemetry.execute(event, {"n": 1})
        expected = Counter(
            {(i, event): 1 for i, evs in self.model.items() if event in evs}
        )
        assert self.calls == expected

    @invariant()
    def listing_matches_the_model(self):
        for prefix in [(), ("a",), ("b",), ("a", "x")]:
            got = sorted((h.id, h.event) for h in telemetry.list_handlers(prefix))
            want = sorted(
                (i, e)
                for i, evs in self.model.items()
                for e in evs
                if e[: len(prefix)] == prefix
            )
            assert got == want

    def teardown(self):
        for handler_id in self.model:
            telemetry.detach(handler_id)


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None
)
