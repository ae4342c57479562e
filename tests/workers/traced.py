"""A test adapter that traces its commands with :func:`snakepit.tracing.child_span`.

The worker is its own process, so it sets up its own OpenTelemetry
``TracerProvider`` in ``setup()``, exporting to memory; ``finished_spans`` hands
what it exported back to the test as plain dicts, to compare with the parent's
request spans.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from snakepit.adapter import Adapter, call_metadata, command
from snakepit.tracing import child_span


def _as_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": None
        if span.parent is None
        else f"{span.parent.span_id:016x}",
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


class TracedAdapter(Adapter):
    """Commands that open child spans; the worker's spans go to memory."""

    def setup(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        trace.set_tracer_provider(self.provider)

    def teardown(self) -> None:
        self.provider.shutdown()

    @command
    def work(self, label: str, fail: bool = False) -> str:
        """A span (with a nested one) around some work; raise if *fail*."""
        with child_span("traced.work", label=label):
            with child_span("traced.inner"):
                pass
            if fail:
                raise ValueError(f"work {label} failed on purpose")
        return label

    @command
    def stream_work(self, n: int) -> Iterator[int]:
        """Stream 0 .. n-1, inside a child span."""
        with child_span("traced.stream", n=n):
            yield from range(n)

    @command
    def metadata(self) -> dict[str, str]:
        """The metadata this call arrived with."""
        return dict(call_metadata())

    @command
    def finished_spans(self) -> list[dict[str, Any]]:
        """Every span this worker has exported so far, as plain dicts."""
        return [_as_dict(span) for span in self.exporter.get_finished_spans()]
