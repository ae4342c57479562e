"""Tests for spans: start, then stop or exception, with a monotonic duration."""

from __future__ import annotations

import types

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit import telemetry
from snakepit.telemetry import _span

pytestmark = pytest.mark.anyio

PREFIX = ("app", "work")
START, STOP, EXCEPTION = (
    (*PREFIX, "start"),
    (*PREFIX, "stop"),
    (*PREFIX, "exception"),
)


def capture():
    return telemetry.capture_events(PREFIX, check_catalogue=False)


def fake_clock(monkeypatch, *readings):
    clock = iter(readings)
    monkeypatch.setattr(
        _span, "time", types.SimpleNamespace(monotonic=lambda: next(clock))
    )


def test_a_span_emits_start_then_stop():
    with capture() as events, telemetry.span(PREFIX, {"pool": "p"}) as s:
        assert events.names() == [START]
        assert isinstance(s, telemetry.Span)
    start, stop = events
    assert (start.event, stop.event) == (START, STOP)
    assert start.measurements.keys() == {"monotonic_time"}
    assert stop.measurements.keys() == {"duration", "monotonic_time"}
    assert stop.measurements["duration"] >= 0
    assert stop.measurements["monotonic_time"] >= start.measurements["monotonic_time"]
    assert start.metadata == stop.metadata == {"pool": "p"}


def test_duration_is_the_difference_of_monotonic_readings(monkeypatch):
    fake_clock(monkeypatch, 10.0, 12.5)
    with capture() as events, telemetry.span(PREFIX):
        pass
    assert events[0].measurements == {"monotonic_time": 10.0}
    assert events[1].measurements == {"duration": 2.5, "monotonic_time": 12.5}


def test_an_exception_is_reported_and_re_raised(monkeypatch):
    fake_clock(monkeypatch, 1.0, 1.25)
    error = KeyError("k")
    with (
        capture() as events,
        pytest.raises(KeyError) as info,
        telemetry.span(PREFIX, {"pool": "p"}) as s,
    ):
        s.set_metadata(worker_id="w")
        raise error
    assert info.value is error
    assert events.names() == [START, EXCEPTION]
    exc = events[1]
    assert exc.measurements == {"duration": 0.25, "monotonic_time": 1.25}
    assert exc.metadata == {
        "pool": "p",
        "worker_id": "w",
        "kind": "KeyError",
        "error": error,
    }


def test_the_body_adds_stop_metadata_and_start_metadata_is_a_snapshot():
    given_metadata = {"pool": "p"}
    with capture() as events, telemetry.span(PREFIX, given_metadata) as s:
        s.set_metadata(success=True)
        s.metadata["worker_id"] = "w-1"
    assert events[0].metadata == {"pool": "p"}
    assert events[1].metadata == {"pool": "p", "success": True, "worker_id": "w-1"}
    assert given_metadata == {"pool": "p"}


def test_handlers_see_a_read_only_start_metadata():
    seen = []
    telemetry.attach("t", START, lambda e, m, md, c: seen.append(md))
    with telemetry.span(PREFIX, {"a": 1}) as s:
        s.set_metadata(b=2)
    [start_metadata] = seen
    assert start_metadata == {"a": 1}
    with pytest.raises(TypeError):
        start_metadata["c"] = 3


def test_a_span_is_used_once():
    s = telemetry.span(PREFIX)
    with s:
        pass
    with pytest.raises(RuntimeError, match="already entered"):
        s.__enter__()


def test_a_failing_handler_does_not_break_the_span():
    calls = []

    def boom(event, measurements, metadata, config):
        calls.append(event)
        raise ValueError

    telemetry.attach_many("boom", [START, STOP], boom)
    with capture() as events, telemetry.span(PREFIX):
        pass
    assert events.names() == [START, STOP]
    assert calls == [START]  # detached from both at its first failure
    assert telemetry.list_handlers() == []


@pytest.mark.parametrize(
    ("prefix", "error"),
    [((), ValueError), (["app"], TypeError), (("app", 3), TypeError)],
)
def test_a_bad_prefix_is_rejected(prefix, error):
    with pytest.raises(error, match="event_prefix"):
        telemetry.span(prefix)


@given(
    start=st.dictionaries(st.text(min_size=1), st.integers(), max_size=4),
    added=st.dictionaries(st.text(min_size=1), st.integers(), max_size=4),
)
def test_stop_metadata_is_start_metadata_updated_by_the_body(start, added):
    with capture() as events, telemetry.span(PREFIX, start) as s:
        s.set_metadata(**added)
    assert events[0].metadata == start
    assert events[1].metadata == {**start, **added}


async def test_a_span_works_in_async_code(anyio_backend):
    with anyio.fail_after(5):
        with capture() as events, telemetry.span(PREFIX) as s:
            await anyio.lowlevel.checkpoint()
            s.set_metadata(success=True)
        assert events.names() == [START, STOP]
        assert events[1].metadata == {"success": True}


async def test_cancellation_ends_the_span_with_an_exception_event(anyio_backend):
    with anyio.fail_after(5):
        with capture() as events:
            with anyio.CancelScope() as scope:
                with telemetry.span(PREFIX):
                    scope.cancel()
                    await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert events.names() == [START, EXCEPTION]
        cancelled = anyio.get_cancelled_exc_class()
        assert events[1].metadata["kind"] == cancelled.__name__
        assert isinstance(events[1].metadata["error"], cancelled)


def test_span_listened_follows_handlers_of_the_span_events_and_observers():
    from snakepit.telemetry._bus import span_listened

    def handler(event, measurements, metadata, config):
        pass

    assert not span_listened(PREFIX)
    telemetry.attach("other", (*PREFIX, "begun"), handler)  # not a span event
    assert not span_listened(PREFIX)
    for i, event in enumerate((START, STOP, EXCEPTION)):
        telemetry.attach(f"h{i}", event, handler)
        assert span_listened(PREFIX)
        assert not span_listened(("app", "other"))
        telemetry.detach(f"h{i}")
        assert not span_listened(PREFIX)
    with capture():  # an observer sees every event
        assert span_listened(("app", "other"))
    assert not span_listened(PREFIX)
