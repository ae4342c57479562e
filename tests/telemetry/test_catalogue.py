"""Tests for the catalogue, its checks, and the telemetry guide that documents it."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit import telemetry
from snakepit.telemetry import EVENTS, EventKind, EventSpec, _catalogue
from snakepit.telemetry._catalogue import (
    HANDLER_FAILURE,
    check_events,
    format_name,
    render_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"

REQUEST = EventSpec(
    name=("app", "request"),
    kind=EventKind.SPAN,
    metadata=("pool", "command"),
    stop_metadata=("worker_id", "success"),
    description="One call.",
)
SPANNED = types.MappingProxyType({REQUEST.name: REQUEST})


# --- The catalogue itself ---


def test_events_is_a_read_only_mapping_keyed_by_name():
    assert isinstance(EVENTS, types.MappingProxyType)
    for name, spec in EVENTS.items():
        assert name == spec.name
        assert name[0] == "snakepit"
    with pytest.raises(TypeError):
        EVENTS[("x",)] = REQUEST  # type: ignore[index]


def test_the_seed_events_are_exact():
    recycled = EVENTS[("snakepit", "worker", "recycled")]
    assert recycled.measurements == ("count",)
    assert recycled.metadata == (
        "worker_id",
        "pool",
        "reason",
        "uptime_seconds",
        "request_count",
    )
    health = EVENTS[("snakepit", "worker", "health_check_failed")]
    assert health.measurements == ("count",)
    assert health.metadata == ("worker_id", "pool", "reason")


def test_the_handler_failure_event_is_catalogued():
    assert EVENTS[HANDLER_FAILURE].measurements == ("count",)
    assert EVENTS[HANDLER_FAILURE].metadata == ("handler_id", "event", "error")


def test_event_names_of_events_and_spans():
    assert EVENTS[HANDLER_FAILURE].event_names() == (HANDLER_FAILURE,)
    assert REQUEST.event_names() == (
        ("app", "request", "start"),
        ("app", "request", "stop"),
        ("app", "request", "exception"),
    )


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"name": ["a"]}, TypeError, "non-empty tuple"),
        ({"name": ()}, TypeError, "non-empty tuple"),
        ({"name": ("App",)}, ValueError, "lowercase word"),
        ({"name": ("a", "b c")}, ValueError, "lowercase word"),
        ({"measurements": "count"}, TypeError, "trailing comma"),
        ({"metadata": ("a", 1)}, TypeError, "non-empty strings"),
        ({"metadata": ("a", "a")}, ValueError, "twice"),
        ({"description": " "}, ValueError, "description"),
        ({"stop_metadata": ("a",)}, ValueError, "spans only"),
        ({"kind": EventKind.SPAN, "measurements": ("n",)}, ValueError, "implied"),
        ({"kind": EventKind.SPAN, "metadata": ("kind",)}, ValueError, "rename"),
        ({"kind": EventKind.SPAN, "stop_metadata": ("error",)}, ValueError, "rename"),
        (
            {"kind": EventKind.SPAN, "metadata": ("a",), "stop_metadata": ("a",)},
            ValueError,
            "metadata and stop_metadata",
        ),
        ({"kind": "span"}, TypeError, "kind"),
    ],
)
def test_event_spec_validation(fields, error, match):
    with pytest.raises(error, match=match):
        EventSpec(**{"name": ("a", "b"), "description": "d", **fields})


def test_a_name_declared_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        _catalogue._index([REQUEST, REQUEST])
    clash = EventSpec(name=("app", "request", "stop"), description="clash")
    with pytest.raises(ValueError, match="twice"):
        check_events([], {REQUEST.name: REQUEST, clash.name: clash})


# --- check_events ---


def problems(name, measurements, metadata, catalogue=SPANNED):
    return check_events(
        [(name, dict.fromkeys(measurements, 0), dict.fromkeys(metadata))], catalogue
    )


@pytest.mark.parametrize(
    ("suffix", "measurements", "metadata"),
    [
        ("start", ["monotonic_time"], ["pool", "command"]),
        (
            "stop",
            ["duration", "monotonic_time"],
            ["pool", "command", "worker_id", "success"],
        ),
        (
            "exception",
            ["duration", "monotonic_time"],
            ["pool", "command", "kind", "error"],
        ),
        (
            "exception",
            ["duration", "monotonic_time"],
            ["pool", "command", "worker_id", "kind", "error"],
        ),
    ],
)
def test_span_sub_events_that_match(suffix, measurements, metadata):
    assert problems(("app", "request", suffix), measurements, metadata) == []


@pytest.mark.parametrize(
    ("suffix", "measurements", "metadata", "problem"),
    [
        ("start", ["monotonic_time"], ["pool"], "missing ['command']"),
        (
            "start",
            ["monotonic_time"],
            ["pool", "command", "success"],
            "unexpected ['success']",
        ),
        (
            "stop",
            ["duration", "monotonic_time"],
            ["pool", "command"],
            "missing ['success', 'worker_id']",
        ),
        (
            "stop",
            ["duration"],
            ["pool", "command", "worker_id", "success"],
            "measurements ['duration']",
        ),
        (
            "exception",
            ["duration", "monotonic_time"],
            ["pool", "command"],
            "missing ['error', 'kind']",
        ),
        ("done", [], [], "not in the catalogue"),
    ],
)
def test_span_sub_events_that_do_not_match(suffix, measurements, metadata, problem):
    [line] = problems(("app", "request", suffix), measurements, metadata)
    assert problem in line
    assert line.startswith(repr(("app", "request", suffix)))


def test_a_span_prefix_is_not_an_event():
    assert problems(("app", "request"), [], []) != []


def test_real_spans_are_checked_by_capture(monkeypatch):
    monkeypatch.setattr(_catalogue, "_EVENT_SHAPES", _catalogue._shapes(SPANNED))
    metadata = {"pool": "p", "command": "c"}
    with telemetry.capture_events(), telemetry.span(REQUEST.name, metadata) as s:
        s.set_metadata(worker_id="w", success=True)

    missing = r"stop'\): metadata missing \['success'\]"
    with (
        pytest.raises(AssertionError, match=missing),
        telemetry.capture_events(),
        telemetry.span(REQUEST.name, metadata) as s,
    ):
        s.set_metadata(worker_id="w")

    with (
        pytest.raises(AssertionError, match="exception"),
        telemetry.capture_events() as events,
        pytest.raises(KeyError),
        telemetry.span(REQUEST.name, {"pool": "p"}),
    ):
        raise KeyError
    assert events.names()[-1] == ("app", "request", "exception")


# Plain events; spans have their own tests above.
specs = st.sampled_from([s for s in EVENTS.values() if s.kind is EventKind.EVENT])


@given(spec=specs)
def test_every_catalogued_event_passes_with_exactly_its_keys(spec):
    for name in spec.event_names():
        assert problems(name, spec.measurements, spec.metadata, EVENTS) == []


@given(spec=specs, key=st.text(min_size=1))
def test_an_extra_key_fails(spec, key):
    if key not in spec.metadata:
        assert problems(spec.name, spec.measurements, (*spec.metadata, key), EVENTS)
    if key not in spec.measurements:
        assert problems(spec.name, (*spec.measurements, key), spec.metadata, EVENTS)


@given(spec=specs, data=st.data())
def test_a_missing_key_fails(spec, data):
    keys = data.draw(st.sampled_from(["measurements", "metadata"]))
    present = list(getattr(spec, keys))
    present.remove(data.draw(st.sampled_from(present)))
    if keys == "measurements":
        assert problems(spec.name, present, spec.metadata, EVENTS)
    else:
        assert problems(spec.name, spec.measurements, present, EVENTS)


# --- The guide ---


def test_render_table_describes_spans():
    table = render_table(SPANNED)
    assert '`("app", "request")` span: `start`, `stop`, `exception`' in table
    assert "stop adds `worker_id`, `success`" in table
    assert "exception adds `kind`, `error`" in table


def docs_text():
    return DOCS.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(EVENTS), ids=".".join)
def test_each_catalogued_event_is_in_the_docs(name):
    assert f"`{format_name(name)}`" in docs_text()


def test_the_docs_table_is_generated_from_the_catalogue():
    match = re.search(
        r"<!-- catalogue:start[^\n]*-->\n(.*?)<!-- catalogue:end -->",
        docs_text(),
        re.DOTALL,
    )
    assert match, "docs/telemetry.md lost its catalogue:start/end markers"
    expected = render_table()
    assert match.group(1) == expected, (
        "docs/telemetry.md's event table is out of date; replace it with:\n\n"
        + expected
    )


def test_the_docs_python_examples_run(capsys):
    blocks = re.findall(
        r"^```python\n(.*?)^```$", docs_text(), re.MULTILINE | re.DOTALL
    )
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_telemetry"}
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), namespace)
    assert [h.id for h in telemetry.list_handlers()] == ["worker-recycled"]
    assert capsys.readouterr().out == "worker w-7 recycled: max_requests\n"
