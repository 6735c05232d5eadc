"""Tracing: off by default, on by OTEL_* variables, and replies carried in the request's trace."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.harness import ReplyCollector, RequestSender, lookup_request
from worker.runtime import Worker
from worker.settings import load_settings
from worker.tracing import Tracing, exporter_from_environment

REPLY_TIMEOUT_S = 30.0
REQUEST_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REQUEST_TRACEPARENT = f"00-{REQUEST_TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, None),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, None),
    ],
    ids=["unset", "console", "otlp", "endpoint-only", "traces-endpoint-only", "none-wins", "sdk-disabled", "unsupported"],
)
def test_exporter_chosen_from_environment(environ, expected):
    assert exporter_from_environment(environ) == expected


def test_tracing_off_by_default():
    tracing = Tracing.from_environment({})
    assert not tracing.enabled
    assert tracing.broker_middleware() is None
    with tracing.record_span("t", 0, 0, [("traceparent", REQUEST_TRACEPARENT.encode())]):
        pass


def test_console_exporter_builds_provider():
    tracing = Tracing.from_environment({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "lookup-test"})
    try:
        assert tracing.enabled
        assert tracing.provider.resource.attributes["service.name"] == "lookup-test"
    finally:
        tracing.shutdown()


def test_otlp_without_exporter_package_stays_off(caplog):
    pytest.importorskip("opentelemetry.sdk")
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP exporter is installed")
    with caplog.at_level(logging.WARNING, logger="worker.tracing"):
        tracing = Tracing.from_environment({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.enabled
    assert "opentelemetry-exporter-otlp-proto-http" in caplog.text


def test_record_span_child_of_traceparent():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    with tracing.record_span("requests", 2, 40, [("traceparent", REQUEST_TRACEPARENT.encode())]):
        pass
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == REQUEST_TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.attributes["messaging.kafka.message.offset"] == 40


@pytest.mark.kafka
async def test_reply_carries_request_trace(topics, simulator):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = load_settings(**topics.settings_overrides(), api_base_url=simulator.base_url, http_port=0)
    worker = Worker(settings, tracing=Tracing(provider))
    app = worker.create_app()
    await app.start()
    try:
        async with RequestSender(topics.requests) as sender, ReplyCollector(topics.replies) as replies:
            await sender.send(lookup_request("traced", ["1000000000016"]), headers={"traceparent": REQUEST_TRACEPARENT})
            await sender.send(lookup_request("untraced", ["2000000000025"]))
            await sender.flush()
            assert not await replies.wait_for(["traced", "untraced"], timeout_s=REPLY_TIMEOUT_S)
    finally:
        await app.stop()

    traced = replies.by_request_id["traced"][0].headers
    assert "traceparent" in traced, f"the reply has no traceparent header; headers: {sorted(traced)}"
    _version, trace_id, reply_parent, _flags = traced["traceparent"].decode().split("-")
    assert trace_id == REQUEST_TRACE_ID
    assert reply_parent != "00f067aa0ba902b7"  # a span of the worker, not the requester's

    untraced = replies.by_request_id["untraced"][0].headers
    assert "traceparent" in untraced, "a reply to a request without trace context still starts a trace"
    assert untraced["traceparent"].decode().split("-")[1] != REQUEST_TRACE_ID

    spans = exporter.get_finished_spans()
    in_request_trace = [span for span in spans if format(span.context.trace_id, "032x") == REQUEST_TRACE_ID]
    names = {span.name for span in in_request_trace}
    assert f"{topics.requests} process record" in names
    assert f"{topics.replies} publish" in names
