"""One place for the traces, metrics and logs of every Quark service.

* **Metrics** — Prometheus collectors on the default registry. Every metric carries
  a ``service`` label so that several services can share one process (embedded
  mode). The metric and label names are a contract with the Grafana dashboards:
  do not rename them.
* **Traces** — OpenTelemetry. :func:`setup_tracing` installs the global tracer
  provider (OTLP/HTTP export when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set);
  :func:`instrument_app` traces HTTP requests; :func:`inject_trace_context` /
  :func:`extract_trace_context` carry the W3C trace context through NATS headers.
* **Logs** — :func:`setup_logging` writes one JSON object per line, stamped with the
  service and the ``trace_id``/``span_id`` of the current span.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import Tracer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.responses import Response
from starlette.routing import Mount, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONSUMER_PENDING",
    "EVENTS_CONSUMED",
    "EVENTS_PUBLISHED",
    "EVENT_HANDLE_DURATION",
    "EVENT_LAG_SECONDS",
    "HTTP_DURATION",
    "HTTP_IN_FLIGHT",
    "HTTP_REQUESTS",
    "MODULE_HEALTH",
    "OUTBOX_BACKLOG",
    "UNMATCHED_ROUTE",
    "WEBSOCKET_CONNECTIONS",
    "TraceContextMiddleware",
    "extract_trace_context",
    "inject_trace_context",
    "instrument_app",
    "metrics_response",
    "setup_logging",
    "setup_tracing",
    "tracer",
]

# --------------------------------------------------------------------------- metrics

# No `*_created` series next to every counter and histogram: dashboards never use them.
disable_created_metrics()

# 1 ms .. 10 s: API calls and event handlers.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Delivery lag also covers retries and backlogs after an outage: 5 ms .. 1 h.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "quark_http_requests_total",
    "HTTP requests handled, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "quark_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response (streams included).",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "quark_http_requests_in_flight",
    "HTTP requests being handled right now.",
    ["service"],
)
EVENTS_PUBLISHED = Counter(
    "quark_events_published_total",
    "Events published from the outbox to JetStream.",
    ["service", "type"],
)
EVENTS_CONSUMED = Counter(
    "quark_events_consumed_total",
    "Events received by a consumer, by outcome (applied|duplicate|retried|dead_lettered|malformed).",
    ["service", "consumer", "outcome"],
)
# Every consumer creates its series of each outcome at 0 when it starts: increase() over a series that first
# appears at 1 is 0, so the first dead letter would never show on a panel nor fire an alert.
CONSUMER_OUTCOMES = ("applied", "duplicate", "retried", "dead_lettered", "malformed")
EVENT_HANDLE_DURATION = Histogram(
    "quark_event_handle_duration_seconds",
    "Time a consumer's handler took for one event.",
    ["service", "consumer"],
    buckets=LATENCY_BUCKETS,
)
EVENT_LAG_SECONDS = Histogram(
    "quark_event_delivery_lag_seconds",
    "Time from an event's own timestamp to its handling by a consumer.",
    ["service", "consumer"],
    buckets=LAG_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "quark_outbox_backlog",
    "Outbox rows not yet published.",
    ["service"],
)
CONSUMER_PENDING = Gauge(
    "quark_consumer_pending_messages",
    "Messages JetStream still holds for a durable consumer.",
    ["service", "consumer"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "quark_websocket_connections",
    "Open WebSocket connections.",
    ["service"],
)
# Not `module`/`instance`: Prometheus sets those on every scraped series (the target's own labels), and a
# scraped label of the same name is renamed exported_* — the panels then showed the hub, not the module.
MODULE_HEALTH = Gauge(
    "quark_hub_module_health",
    "Health of each docked module instance as seen by the hub: 1 for the current state, 0 otherwise.",
    ["docked_module", "docked_instance", "state"],
)


def metrics_response() -> Response:
    """The default registry in the Prometheus text exposition format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- logging

# The service handling the current request (set by the HTTP middleware), so that in
# embedded mode each log line names the right service rather than the last one set up.
_current_service: ContextVar[str | None] = ContextVar("quark_service", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_RESERVED_KEYS = frozenset(
    {"time", "level", "logger", "message", "service", "trace_id", "span_id", "exc_info", "stack_info"}
)


def _trace_ids() -> tuple[str | None, str | None]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, service, trace_id, span_id
    (+ exc_info / stack_info text when present, + any ``extra=`` fields)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = _trace_ids()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", None) or _current_service.get() or self.service,
            "trace_id": trace_id,
            "span_id": span_id,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in _RESERVED_KEYS and not key.startswith("_"):
                out[key] = value
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for local development, still carrying the trace id."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(service)s %(name)s [%(trace_id)s] %(message)s")
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        trace_id, _ = _trace_ids()
        record.trace_id = trace_id or "-"
        if not getattr(record, "service", None):
            record.service = _current_service.get() or self.service
        return super().format(record)


def setup_logging(service: str, *, level: str = "INFO", json_logs: bool = True) -> None:
    """Send every log record (root logger, uvicorn's included) to stderr, as JSON lines by default.

    Idempotent: a second call replaces the handler installed by the first one.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_quark_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._quark_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter(service) if json_logs else TextFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    from quark_sdk import operator  # the recent-records ring the operator's console reads

    operator.install(service)
    # uvicorn installs its own plain-text handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


# --------------------------------------------------------------------------- tracing


def _span_exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if base or traces:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The signal-specific variable is used as-is; the generic one is a base URL.
        exporters.append(OTLPSpanExporter(endpoint=traces or base.rstrip("/") + "/v1/traces"))
    if environ.get("QUARK_TRACE_CONSOLE", "").strip().lower() in ("1", "true", "yes"):
        exporters.append(ConsoleSpanExporter())
    return exporters


def _sampler(environ: Mapping[str, str], exporters: list[SpanExporter]) -> Sampler | None:
    """None lets the SDK read ``OTEL_TRACES_SAMPLER``; with no exporter, record nothing."""
    if environ.get("OTEL_TRACES_SAMPLER", "").strip() or exporters:
        return None
    return ALWAYS_OFF


def setup_tracing(service: str, *, environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """Install (once per process) the global tracer provider and return it.

    Spans are always created, so trace ids show up in logs and propagate through
    HTTP and NATS; they are exported with OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and printed when
    ``QUARK_TRACE_CONSOLE=1``. Later calls return the provider already installed.

    Sampling follows ``OTEL_TRACES_SAMPLER`` when it is set. Otherwise every span is
    recorded when there is somewhere to export it, and none when there is not: an
    unrecorded span still has valid ids (logs and propagation keep working) but skips
    the attribute and event bookkeeping nobody would read (measured on the home
    timeline in docs/blog.md).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    exporters = _span_exporters(environ)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}), sampler=_sampler(environ, exporters))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    installed = trace.get_tracer_provider()
    # Someone else installed a non-SDK provider first: ours is still usable explicitly.
    return installed if isinstance(installed, TracerProvider) else provider


def tracer(name: str) -> Tracer:
    return trace.get_tracer(name)


def spans_recorded() -> bool:
    """Whether a span started now may be recorded: False with no tracer provider installed (OpenTelemetry's
    no-op spans) and with `setup_tracing`'s provider when it has nowhere to export (the ALWAYS_OFF sampler).
    Hot paths then skip the span's attributes and context-manager bookkeeping; they still start the
    (unrecorded) span, whose ids keep logs and propagation working."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider.sampler is not ALWAYS_OFF
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class _HeadersGetter(Getter[Mapping[str, str]]):
    """Case-insensitive lookup: other NATS clients may send ``Traceparent``."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_GETTER = _HeadersGetter()


def inject_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's W3C ``traceparent``/``tracestate`` to ``headers`` (in place) and return it."""
    propagate.inject(headers)
    return headers


def extract_trace_context(headers: Mapping[str, str] | None) -> Context:
    """The context carried by message headers; an empty (root) context when there is none."""
    if not headers:
        return Context()
    return propagate.extract(headers, getter=_GETTER)


# --------------------------------------------------------------------------- HTTP instrumentation

UNMATCHED_ROUTE = "<unmatched>"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
# Regexes searched in the full URL (scheme://host/path) by the OpenTelemetry middleware.
_OTEL_EXCLUDED_URLS = r"^\w+://[^/]+/health,^\w+://[^/]+/metrics/?$"


def _is_excluded(path: str) -> bool:
    return path.startswith("/health") or path.rstrip("/") == "/metrics"


def _route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that handled the request, e.g. ``/api/v1/posts/{post_id}``."""
    # Mounted sub-applications extend root_path; their routes are relative to it.
    prefix = scope.get("root_path", "") or ""
    prefix = prefix[len(root_path) :] if prefix.startswith(root_path) else ""
    route = scope.get("route")
    template: str | None = None
    if route is not None:
        if isinstance(route, Mount):
            return prefix.rstrip("/") + "/{path}"
        # FastAPI (>=0.16x) routes into included routers lazily: the selected route keeps the
        # path it was declared with, the full template lives in its "effective route context".
        fastapi_scope = scope.get("fastapi")
        ctx = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
        if ctx is not None and getattr(ctx, "original_route", None) is route:
            template = getattr(getattr(ctx, "starlette_route", None), "path_format", None) or getattr(
                ctx, "path_format", None
            )
        template = template or getattr(route, "path_format", None) or getattr(route, "path", None)
    elif prefix:
        # A mounted non-router app (static files, ...): label by the mount point.
        return prefix.rstrip("/") + "/{path}"
    if not template:
        return UNMATCHED_ROUTE
    return prefix + template


class HttpMetricsMiddleware:
    """Pure ASGI middleware recording the ``quark_http_*`` metrics.

    WebSocket and lifespan scopes pass straight through, and the response is never
    buffered, so streaming responses keep streaming (their duration covers the stream).
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _is_excluded(get_route_path(scope)):
            await self.app(scope, receive, send)
            return

        method = scope.get("method", "")
        method = method if method in _KNOWN_METHODS else "OTHER"
        root_path = scope.get("root_path", "") or ""
        status = 0
        in_flight = HTTP_IN_FLIGHT.labels(self.service)
        token = _current_service.set(self.service)

        route: str | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, route
            if message["type"] == "http.response.start":
                status = int(message["status"])
                # Routing is done, and the server span still open (it ends with the response).
                route = _route_template(scope, root_path)
                _name_server_span(method, route)
            await send(message)

        in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if not status:
                status = 499  # client went away before a response was started
            raise
        except BaseException:
            if not status:
                status = 500  # the server error middleware will answer 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            in_flight.dec()
            _current_service.reset(token)
            if route is None:  # no response from inside (an exception): the span is still open
                route = _route_template(scope, root_path)
                _name_server_span(method, route)
            HTTP_REQUESTS.labels(self.service, method, route, str(status or 500)).inc()
            HTTP_DURATION.labels(self.service, method, route).observe(elapsed)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The server span's first name: the method alone (routing has not happened yet);
    `HttpMetricsMiddleware` renames it to "METHOD /route/{template}" once a route handled it.
    OpenTelemetry's FastAPI instrumentor instead matched every route once more per request."""
    if scope["type"] != "http":
        return get_route_path(scope) or "websocket", {}
    method = scope.get("method", "")
    return (method if method in _KNOWN_METHODS else "HTTP"), {}


def _name_server_span(method: str, route: str) -> None:
    span = trace.get_current_span()
    if route != UNMATCHED_ROUTE and span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute(HTTP_ROUTE, route)


class TraceContextMiddleware:
    """HTTP tracing when no span is recorded (no exporter, see `setup_tracing`): the request
    continues the caller's W3C trace, or starts one, so log lines and the events it writes carry
    the trace id — without OpenTelemetry's server-span middleware, which collects a dozen request
    attributes before it knows the span will not be recorded (~9% of a home-timeline request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("quark_sdk.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers") or ()
            if name in (b"traceparent", b"tracestate")
        }
        parent = extract_trace_context(carrier)
        span = self.tracer.start_span("HTTP", context=parent, kind=trace.SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
            span.end()


def _spans_recorded(tracer_provider: TracerProvider | None) -> bool:
    provider = tracer_provider or trace.get_tracer_provider()
    return not (isinstance(provider, TracerProvider) and provider.sampler is ALWAYS_OFF)


def instrument_app(app: FastAPI, service: str, *, tracer_provider: TracerProvider | None = None) -> None:
    """HTTP metrics (route templates, never raw paths) and OpenTelemetry server spans.

    ``/metrics`` and ``/health*`` are neither counted nor traced. When spans are not recorded
    (no exporter), requests still join or start a trace (`TraceContextMiddleware`). Call before
    the app starts serving (and after `setup_tracing`); calling it again on the same app does nothing.
    """
    if getattr(app.state, "quark_instrumented", False):
        return
    app.state.quark_instrumented = True
    app.add_middleware(HttpMetricsMiddleware, service=service)
    if not _spans_recorded(tracer_provider):
        app.add_middleware(TraceContextMiddleware)
        return
    # Outside the metrics middleware (added last = outermost), inside Starlette's error middleware:
    # a handler's exception passes through the span and is recorded on it. No span per ASGI
    # receive/send message: a streamed response would get one per chunk.
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=_OTEL_EXCLUDED_URLS,
        default_span_details=_span_details,
        exclude_spans=["receive", "send"],
        tracer_provider=tracer_provider,  # None: the global one (setup_tracing)
    )
