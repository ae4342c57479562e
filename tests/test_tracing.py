"""snakepit.tracing: a span per request in the parent, continued in the worker.

The parent's spans go to the SDK's in-memory exporter; the worker
(``tests.workers.traced``) exports its own spans to memory in its own process and
hands them back through a command, so the two sides' ids can be compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from snakepit import telemetry, tracing
from snakepit.exceptions import RemoteError
from snakepit.pool import open_pool

pytestmark = pytest.mark.anyio

TRACED = "tests.workers.traced:TracedAdapter"
START = ("snakepit", "request", "start")
STOP = ("snakepit", "request", "stop")
EXCEPTION = ("snakepit", "request", "exception")


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A parent-side provider exporting to memory, instrumented for the test."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.exporter = exporter  # type: ignore[attr-defined]
    tracing.instrument(provider)
    try:
        yield provider
    finally:
        tracing.uninstrument()
        provider.shutdown()


def finished(provider: TracerProvider) -> tuple[ReadableSpan, ...]:
    exporter: InMemorySpanExporter = provider.exporter  # type: ignore[attr-defined]
    return exporter.get_finished_spans()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


# --- Through real workers ---


async def test_each_request_has_one_span_and_the_worker_continues_it(
    provider: TracerProvider,
) -> None:
    calls = 6
    caller = provider.get_tracer("test-caller")
    with anyio.fail_after(30):
        async with open_pool(adapter=TRACED, size=1, name="traced") as pool:
            [worker_id] = pool.list_workers()

            async def call(i: int) -> None:
                # Concurrent callers, each in a trace of its own: queued on one
                # worker, their contexts must not mix.
                with caller.start_as_current_span(f"caller-{i}"):
                    assert await pool.execute("work", {"label": str(i)}) == str(i)

            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(call, i)
            worker_spans: list[dict[str, Any]] = await pool.execute("finished_spans")

    spans = finished(provider)
    requests = [s for s in spans if s.name == "snakepit.execute work"]
    assert len(requests) == calls
    callers = {s.name: s for s in spans if s.name.startswith("caller-")}
    by_label = {
        s["attributes"]["label"]: s for s in worker_spans if s["name"] == "traced.work"
    }
    inner = {
        s["parent_span_id"]: s for s in worker_spans if s["name"] == "traced.inner"
    }
    assert len(by_label) == calls and len(inner) == calls
    for request in requests:
        assert request.kind is SpanKind.CLIENT
        assert request.status.status_code is StatusCode.UNSET
        attributes = dict(request.attributes or {})
        assert attributes["snakepit.pool"] == "traced"
        assert attributes["snakepit.command"] == "work"
        assert attributes["snakepit.worker_id"] == worker_id
        assert attributes["snakepit.success"] is True
        assert attributes["rpc.system"] == "snakepit"
        # The request span is the child of its caller's span...
        assert request.parent is not None
        [owner] = [
            c for c in callers.values() if c.context.span_id == request.parent.span_id
        ]
        label = owner.name.removeprefix("caller-")
        trace_id, span_id = hex_ids(request)
        # ...and the worker's span for that very call is the child of it.
        child = by_label[label]
        assert child["trace_id"] == trace_id
        assert child["parent_span_id"] == span_id
        assert inner[child["span_id"]]["trace_id"] == trace_id
    assert len({hex_ids(r)[0] for r in requests}) == calls  # one trace per caller


async def test_a_failed_call_marks_both_sides(provider: TracerProvider) -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=TRACED, size=1) as pool:
            with pytest.raises(RemoteError, match="failed on purpose"):
                await pool.execute("work", {"label": "x", "fail": True})
            worker_spans = await pool.execute("finished_spans")
    [request] = [s for s in finished(provider) if s.name == "snakepit.execute work"]
    assert request.parent is None  # no caller span: a trace of its own
    assert request.status.status_code is StatusCode.ERROR
    attributes = dict(request.attributes or {})
    assert attributes["error.type"] == "RemoteError"
    assert attributes["snakepit.remote_type"] == "ValueError"
    assert attributes["snakepit.success"] is False
    assert [e.name for e in request.events] == ["exception"]
    [child] = [s for s in worker_spans if s["name"] == "traced.work"]
    assert child["status"] == "ERROR"
    assert (child["trace_id"], child["parent_span_id"]) == hex_ids(request)


async def test_the_trace_context_travels_in_the_call_metadata(
    provider: TracerProvider,
) -> None:
    with anyio.fail_after(30):
        async with open_pool(adapter=TRACED, size=1) as pool:
            metadata = await pool.execute("metadata")
            tracing.uninstrument()
            assert not tracing.is_instrumented()
            after = await pool.execute("metadata")
    [request] = [s for s in finished(provider) if s.name == "snakepit.execute metadata"]
    trace_id, span_id = hex_ids(request)
    assert metadata["traceparent"].startswith(f"00-{trace_id}-{span_id}-")  # + flags
    assert "traceparent" not in after  # the provider was removed


async def test_a_stream_is_one_request_span(provider: TracerProvider) -> None:
    caller = provider.get_tracer("test-caller")
    with anyio.fail_after(30):
        async with open_pool(adapter=TRACED, size=1) as pool:
            with caller.start_as_current_span("caller") as caller_span:
                got = []
                async with pool.execute_stream("stream_work", {"n": 3}) as chunks:
                    async for chunk in chunks:
                        got.append(chunk)
                        # The caller's code never runs under the request span.
                        assert trace.get_current_span() is caller_span
            worker_spans = await pool.execute("finished_spans")
    assert got == [0, 1, 2]
    [request] = [
        s for s in finished(provider) if s.name == "snakepit.execute stream_work"
    ]
    [child] = [s for s in worker_spans if s["name"] == "traced.stream"]
    assert child["trace_id"] == hex_ids(request)[0]
    # The stream's metadata is taken once its request span started: the worker's
    # span hangs under the request span.
    caller_id = f"{caller_span.get_span_context().span_id:016x}"
    assert child["parent_span_id"] == hex_ids(request)[1]
    assert request.parent is not None and request.parent.span_id == int(caller_id, 16)


# --- The handlers alone (no worker) ---


def emit_request(command: str, event: tuple[str, ...], **extra: object) -> None:
    metadata: dict[str, object] = {"pool": "p", "command": command}
    if event == START:
        telemetry.execute(event, {"monotonic_time": 0.0}, metadata)
    else:
        telemetry.execute(
            event, {"duration": 0.1, "monotonic_time": 0.1}, {**metadata, **extra}
        )


def test_interleaved_requests_in_one_task_end_their_own_spans(
    provider: TracerProvider,
) -> None:
    """Two streams open at once in one task end in any order."""
    emit_request("a", START)
    emit_request("b", START)
    headers = tracing._trace_headers()
    assert headers is not None
    emit_request("a", STOP, worker_id="w-1", success=True)
    emit_request("b", EXCEPTION, kind="QueueTimeout", error=None)
    spans = {s.name: s for s in finished(provider)}
    a, b = spans["snakepit.execute a"], spans["snakepit.execute b"]
    assert dict(a.attributes or {})["snakepit.worker_id"] == "w-1"
    assert b.status.status_code is StatusCode.ERROR
    assert dict(b.attributes or {})["error.type"] == "QueueTimeout"
    # The innermost open request was b: the call being encoded was b's.
    trace_id, span_id = hex_ids(b)
    assert headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert tracing._trace_headers() is None  # nothing open, no current span


def test_instrument_again_replaces_the_provider(provider: TracerProvider) -> None:
    other = TracerProvider()
    exporter = InMemorySpanExporter()
    other.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(other)
    assert [h.id for h in telemetry.list_handlers(("snakepit", "request"))].count(
        "snakepit.tracing"
    ) == 3
    emit_request("c", START)
    emit_request("c", STOP, worker_id=None, success=True)
    assert [s.name for s in exporter.get_finished_spans()] == ["snakepit.execute c"]
    assert finished(provider) == ()
    tracing.uninstrument()
    tracing.uninstrument()  # a no-op
    assert not [
        h for h in telemetry.list_handlers(("snakepit",)) if h.id == "snakepit.tracing"
    ]
    other.shutdown()


def test_child_spans_nest_and_start_a_trace_outside_a_call() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with (
        tracing.child_span("outer", tracer_provider=provider, size=3),
        tracing.child_span("inner", tracer_provider=provider),
    ):
        pass
    inner, outer = exporter.get_finished_spans()
    assert outer.parent is None  # no call, no current span: a new trace
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert dict(outer.attributes or {}) == {"size": 3}
    provider.shutdown()


# --- docs/tracing.md ---

DOC = Path(__file__).resolve().parents[1] / "docs" / "tracing.md"


@pytest.mark.parametrize(
    "code", re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
)
def test_the_guides_python_blocks_run(code: str) -> None:
    try:
        exec(compile(code, "<docs/tracing.md>", "exec"), {"__name__": "__doc__"})
    finally:
        tracing.uninstrument()
