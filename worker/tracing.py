"""OpenTelemetry tracing, off unless the standard OTEL_* environment variables turn it on.

Tracing turns on when either
- `OTEL_TRACES_EXPORTER` names an exporter the worker supports (`otlp` or
  `console`), or
- `OTEL_TRACES_EXPORTER` is unset and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter is then `otlp`),
and stays off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
The OpenTelemetry specification defaults the exporter to `otlp`; this worker
does not, so that it sends nothing anywhere unless asked. Every other OTEL_*
variable (service name, resource attributes, sampler, endpoint, headers) is
read by the SDK and the exporter themselves.

Spans: FastStream's `KafkaTelemetryMiddleware` traces each consumed batch and
each publish. Because the subscriber takes records in batches, its consume
span starts a new trace that only links the requests. So the pipeline also
opens one span per record whose parent is the request's `traceparent`, and
the reply is published inside it: the reply's `traceparent` header then
belongs to the request's trace.

Without `opentelemetry-sdk` installed the worker runs with tracing off and
logs one warning; `otlp` also needs `opentelemetry-exporter-otlp-proto-http`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

SERVICE_NAME = "card-lookup-worker"
SUPPORTED_EXPORTERS = ("otlp", "console")


def exporter_from_environment(environ: Mapping[str, str]) -> str | None:
    """Name the span exporter the OTEL_* variables ask for, or None when tracing stays off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return "otlp" if endpoint else None
    if "none" in names:
        return None
    for name in names:
        if name in SUPPORTED_EXPORTERS:
            return name
    logger.warning(
        "OTEL_TRACES_EXPORTER=%s names no exporter this worker supports (%s); tracing stays off",
        ",".join(names),
        ", ".join(SUPPORTED_EXPORTERS),
    )
    return None


class Tracing:
    """The tracer provider of one worker, or nothing when tracing is off."""

    def __init__(self, tracer_provider: Any | None = None, *, owned: bool = False) -> None:
        self.provider = tracer_provider
        self._owned = owned
        self._tracer = None
        if tracer_provider is not None:
            from opentelemetry import trace

            self._tracer = trace.get_tracer("worker.pipeline", tracer_provider=tracer_provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @classmethod
    def disabled(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Tracing:
        """Build the provider and exporter the OTEL_* variables ask for; off when they ask for none."""
        environ = os.environ if environ is None else environ
        exporter_name = exporter_from_environment(environ)
        if exporter_name is None:
            return cls.disabled()
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            logger.warning("tracing needs the opentelemetry-sdk package, which is not installed; tracing stays off")
            return cls.disabled()

        exporter = _build_exporter(exporter_name)
        if exporter is None:
            return cls.disabled()
        provider = TracerProvider(resource=Resource.create(_service_attributes(environ)))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        logger.info("tracing on: exporting spans with the %s exporter", exporter_name)
        return cls(provider, owned=True)

    def broker_middleware(self) -> Any | None:
        """FastStream's Kafka telemetry middleware on this provider, None when tracing is off."""
        if self.provider is None:
            return None
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        return KafkaTelemetryMiddleware(tracer_provider=self.provider)

    @contextlib.contextmanager
    def record_span(self, topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes]] | None) -> Iterator[None]:
        """Make a span for one request record current, as a child of the record's `traceparent`.

        Without a `traceparent` the span is a child of the current context (the
        batch's consume span). A no-op when tracing is off.
        """
        if self._tracer is None:
            yield
            return
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {name.lower(): value.decode("latin-1") for name, value in headers or () if value is not None}
        parent = TraceContextTextMapPropagator().extract(carrier) if "traceparent" in carrier else None
        batch_span = trace.get_current_span()
        links = [trace.Link(batch_span.get_span_context())] if parent is not None and batch_span.get_span_context().is_valid else None
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.destination.name": topic,
            "messaging.kafka.destination.partition": partition,
            "messaging.kafka.message.offset": offset,
        }
        with self._tracer.start_as_current_span(
            f"{topic} process record", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes, links=links
        ):
            yield

    def shutdown(self) -> None:
        """Flush and close the exporter of a provider this object built."""
        if self.provider is not None and self._owned:
            self.provider.shutdown()


def _service_attributes(environ: Mapping[str, str]) -> dict[str, str]:
    """`service.name` from OTEL_SERVICE_NAME, else this worker's name unless OTEL_RESOURCE_ATTRIBUTES sets one.

    The SDK's `Resource.create` adds the rest of OTEL_RESOURCE_ATTRIBUTES itself.
    """
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return {"service.name": name}
    if "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return {}
    return {"service.name": SERVICE_NAME}


def _build_exporter(name: str) -> Any | None:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning(
            "OTLP tracing needs the opentelemetry-exporter-otlp-proto-http package, which is not installed; tracing stays off"
        )
        return None
    # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers and timeout itself.
    return OTLPSpanExporter()
