"""quark_sdk.telemetry: HTTP metrics by route template, /metrics, JSON logs with trace ids, trace propagation.

The Prometheus registry and the OpenTelemetry tracer provider are process-global, so
every test uses its own ``service`` label and asserts on deltas.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from quark_sdk import telemetry

POST_ROUTE = "/api/v1/posts/{post_id}"
COMMENT_ROUTE = "/api/v1/posts/{post_id}/comments/{comment_id}"


@pytest.fixture
def service() -> str:
    return f"telemetry-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", autouse=True)
def tracing() -> TracerProvider:
    return telemetry.setup_tracing("quark-telemetry-tests")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_total(service: str, route: str, status: str, method: str = "GET") -> float:
    return value("quark_http_requests_total", service=service, method=method, route=route, status=status)


def duration_count(service: str, route: str, method: str = "GET") -> float:
    return value("quark_http_request_duration_seconds_count", service=service, method=method, route=route)


def make_app(service: str, tracer_provider: TracerProvider | None = None) -> FastAPI:
    app = FastAPI()
    comments = APIRouter(prefix="/comments")
    posts = APIRouter(prefix="/api/v1/posts")
    seen: dict[str, Any] = {}
    app.state.seen = seen

    @posts.get("/{post_id}")
    async def get_post(post_id: int) -> dict[str, Any]:
        if post_id == 404:
            raise HTTPException(status_code=404, detail="no such post")
        seen["in_flight"] = value("quark_http_requests_in_flight", service=service)
        span = trace.get_current_span().get_span_context()
        seen["trace_id"] = trace.format_trace_id(span.trace_id)
        logging.getLogger("quark.test.handler").info("fetching post %s", post_id)
        return {"id": post_id}

    @comments.get("/{comment_id}")
    async def get_comment(post_id: int, comment_id: int) -> dict[str, int]:
        return {"post": post_id, "comment": comment_id}

    posts.include_router(comments, prefix="/{post_id}")
    app.include_router(posts)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0)
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Any:
        return telemetry.metrics_response()

    @app.websocket("/ws/{room}")
    async def echo(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{room}:{text}")
        await websocket.close()

    telemetry.instrument_app(app, service, tracer_provider=tracer_provider)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


# --------------------------------------------------------------------------- HTTP metrics


async def test_requests_are_labelled_with_the_route_template(service: str) -> None:
    app = make_app(service)
    before = requests_total(service, POST_ROUTE, "200")
    before_count = duration_count(service, POST_ROUTE)
    async with client(app) as c:
        assert (await c.get("/api/v1/posts/1")).status_code == 200
        assert (await c.get("/api/v1/posts/2")).status_code == 200

    assert requests_total(service, POST_ROUTE, "200") - before == 2
    assert duration_count(service, POST_ROUTE) - before_count == 2
    # The raw paths never become label values.
    assert (
        REGISTRY.get_sample_value(
            "quark_http_requests_total",
            {"service": service, "method": "GET", "route": "/api/v1/posts/1", "status": "200"},
        )
        is None
    )
    # While the handler ran, the request was in flight; afterwards it is not.
    assert app.state.seen["in_flight"] == 1
    assert value("quark_http_requests_in_flight", service=service) == 0


async def test_nested_included_router_gets_its_full_template(service: str) -> None:
    async with client(make_app(service)) as c:
        assert (await c.get("/api/v1/posts/7/comments/9")).status_code == 200
    assert requests_total(service, COMMENT_ROUTE, "200") == 1


async def test_status_codes_are_labelled(service: str) -> None:
    async with client(make_app(service)) as c:
        assert (await c.get("/api/v1/posts/404")).status_code == 404  # matched route, handler said 404
        assert (await c.get("/api/v1/posts/not-a-number")).status_code == 422
        assert (await c.post("/api/v1/posts/1")).status_code == 405
        assert (await c.get("/boom")).status_code == 500  # unhandled exception
    assert requests_total(service, POST_ROUTE, "404") == 1
    assert requests_total(service, POST_ROUTE, "422") == 1
    assert requests_total(service, POST_ROUTE, "405", method="POST") == 1
    assert requests_total(service, "/boom", "500") == 1
    assert value("quark_http_requests_in_flight", service=service) == 0


async def test_unmatched_paths_share_one_label(service: str) -> None:
    async with client(make_app(service)) as c:
        assert (await c.get("/nope")).status_code == 404
        assert (await c.get("/nope/again/123")).status_code == 404
    assert requests_total(service, telemetry.UNMATCHED_ROUTE, "404") == 2
    assert telemetry.UNMATCHED_ROUTE == "<unmatched>"


async def test_mounted_apps_are_labelled_by_template(service: str, tmp_path: Path) -> None:
    (tmp_path / "logo.txt").write_text("quark")
    sub = FastAPI()

    @sub.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app = FastAPI()
    app.mount("/sub", sub)
    app.mount("/static", StaticFiles(directory=tmp_path))
    telemetry.instrument_app(app, service)
    async with client(app) as c:
        assert (await c.get("/sub/items/abc")).status_code == 200
        assert (await c.get("/static/logo.txt")).text == "quark"
        assert (await c.get("/static/missing.txt")).status_code == 404
    assert requests_total(service, "/sub/items/{item_id}", "200") == 1
    assert requests_total(service, "/static/{path}", "200") == 1
    assert requests_total(service, "/static/{path}", "404") == 1


async def test_streaming_response_streams_and_is_counted(service: str) -> None:
    async with client(make_app(service)) as c, c.stream("GET", "/stream") as resp:
        chunks = [chunk async for chunk in resp.aiter_text()]
    assert "".join(chunks) == "chunk0\nchunk1\nchunk2\n"
    assert requests_total(service, "/stream", "200") == 1


async def test_metrics_endpoint_exposes_the_dashboard_contract(service: str) -> None:
    async with client(make_app(service)) as c:
        await c.get("/api/v1/posts/1")
        await c.get("/health")
        await c.get("/health/ready")
        resp = await c.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(resp.text)}
    for name in (
        "quark_http_requests",  # counters are named without their _total suffix
        "quark_http_request_duration_seconds",
        "quark_http_requests_in_flight",
        "quark_events_published",
        "quark_events_consumed",
        "quark_event_handle_duration_seconds",
        "quark_event_delivery_lag_seconds",
        "quark_outbox_backlog",
        "quark_consumer_pending_messages",
        "quark_websocket_connections",
        "quark_hub_module_health",
    ):
        assert name in families, name
    ours = [s for s in families["quark_http_requests"].samples if s.labels.get("service") == service]
    assert [(s.name, s.labels["route"], s.labels["status"], s.value) for s in ours] == [
        ("quark_http_requests_total", POST_ROUTE, "200", 1.0)
    ]  # /metrics and /health* are not counted


async def test_instrument_app_twice_counts_once(service: str) -> None:
    app = make_app(service)
    telemetry.instrument_app(app, service)
    async with client(app) as c:
        await c.get("/api/v1/posts/1")
    assert requests_total(service, POST_ROUTE, "200") == 1


def test_websocket_route_still_works(service: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        from starlette.testclient import TestClient

    app = make_app(service)
    with TestClient(app) as tc:
        with tc.websocket_connect("/ws/lobby") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "lobby:hello"
        assert tc.get("/api/v1/posts/3").status_code == 200
    assert requests_total(service, POST_ROUTE, "200") == 1
    # A WebSocket is not an HTTP request: nothing recorded for it.
    assert (
        REGISTRY.get_sample_value(
            "quark_http_requests_total", {"service": service, "method": "GET", "route": "/ws/{room}", "status": "101"}
        )
        is None
    )


# --------------------------------------------------------------------------- tracing


async def test_incoming_traceparent_continues_the_trace(service: str) -> None:
    app = make_app(service)
    trace_id = uuid.uuid4().hex
    async with client(app) as c:
        resp = await c.get("/api/v1/posts/1", headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"})
    assert resp.status_code == 200
    assert app.state.seen["trace_id"] == trace_id


async def test_server_spans_are_named_by_route_template_and_record_errors(service: str) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()  # recording, as when an exporter is configured
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = make_app(service, tracer_provider=provider)
    async with client(app) as c:
        assert (await c.get("/api/v1/posts/7/comments/9")).status_code == 200
        assert (await c.get("/boom")).status_code == 500
        assert (await c.get("/nowhere")).status_code == 404
        assert (await c.get("/health")).status_code == 200
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"GET /api/v1/posts/{post_id}/comments/{comment_id}", "GET /boom", "GET"}
    ok = spans["GET /api/v1/posts/{post_id}/comments/{comment_id}"]
    assert ok.kind == trace.SpanKind.SERVER
    assert ok.attributes is not None and ok.attributes["http.route"] == "/api/v1/posts/{post_id}/comments/{comment_id}"
    boom = spans["GET /boom"]
    assert not boom.status.is_ok
    assert [e.attributes["exception.type"] for e in boom.events if e.attributes] == ["RuntimeError"]
    assert spans["GET"].attributes is not None and "http.route" not in spans["GET"].attributes  # unmatched


def test_unrecorded_tracing_uses_the_light_context_middleware(service: str) -> None:
    """No exporter (this module's provider samples nothing): no OpenTelemetry server-span
    middleware, only the trace context; a recording provider gets OpenTelemetry's middleware."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    light = [m.cls for m in make_app(service).user_middleware]
    assert telemetry.TraceContextMiddleware in light and OpenTelemetryMiddleware not in light
    full = [m.cls for m in make_app(service + "-rec", tracer_provider=TracerProvider()).user_middleware]
    assert OpenTelemetryMiddleware in full and telemetry.TraceContextMiddleware not in full


async def test_light_path_starts_a_trace_when_none_comes_in(service: str) -> None:
    app = make_app(service)
    async with client(app) as c:
        assert (await c.get("/api/v1/posts/1")).status_code == 200
        first = app.state.seen["trace_id"]
        assert (await c.get("/api/v1/posts/2")).status_code == 200
    assert first != "0" * 32 and app.state.seen["trace_id"] not in (first, "0" * 32)


def test_setup_tracing_is_idempotent(tracing: TracerProvider) -> None:
    assert telemetry.setup_tracing("another-service") is tracing
    assert trace.get_tracer_provider() is tracing
    with telemetry.tracer("quark.test").start_as_current_span("work") as span:
        assert span.get_span_context().is_valid


def test_exporters_follow_the_environment() -> None:
    assert telemetry._span_exporters({}) == []

    (otlp,) = telemetry._span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    try:
        assert isinstance(otlp, OTLPSpanExporter)
        assert otlp._endpoint == "http://collector:4318/v1/traces"
    finally:
        otlp.shutdown()

    (console,) = telemetry._span_exporters({"QUARK_TRACE_CONSOLE": "1"})
    assert isinstance(console, ConsoleSpanExporter)


def test_spans_are_recorded_only_when_they_can_be_exported() -> None:
    """No exporter: spans keep valid ids (logs, propagation) but are not recorded."""
    console = ConsoleSpanExporter()
    assert telemetry._sampler({}, []) is ALWAYS_OFF
    assert telemetry._sampler({}, [console]) is None  # the SDK default: parent-based, always on
    assert telemetry._sampler({"OTEL_TRACES_SAMPLER": "traceidratio"}, []) is None  # the SDK reads it

    provider = TracerProvider(sampler=telemetry._sampler({}, []))
    with provider.get_tracer("quark.test").start_as_current_span("work") as span:
        assert span.get_span_context().is_valid
        assert not span.is_recording()
        headers = telemetry.inject_trace_context({})
    assert trace.format_trace_id(span.get_span_context().trace_id) in headers["traceparent"]


def test_inject_extract_round_trip_keeps_the_trace() -> None:
    t = TracerProvider().get_tracer("quark.test")  # recording spans, as when an exporter is set
    with t.start_as_current_span("publish") as producer:
        headers = telemetry.inject_trace_context({"Nats-Msg-Id": "abc"})
    sent = producer.get_span_context()
    assert headers["Nats-Msg-Id"] == "abc"
    assert headers["traceparent"].startswith(
        f"00-{trace.format_trace_id(sent.trace_id)}-{trace.format_span_id(sent.span_id)}-"
    )

    ctx = telemetry.extract_trace_context(headers)
    remote = trace.get_current_span(ctx).get_span_context()
    assert remote.trace_id == sent.trace_id
    assert remote.span_id == sent.span_id
    assert remote.is_remote
    with t.start_as_current_span("consume", context=ctx) as consumer:
        assert consumer.get_span_context().trace_id == sent.trace_id
        assert isinstance(consumer, ReadableSpan)
        assert consumer.parent is not None and consumer.parent.span_id == sent.span_id

    # Header names from other NATS clients may be capitalised.
    ctx = telemetry.extract_trace_context({"Traceparent": headers["traceparent"]})
    assert trace.get_current_span(ctx).get_span_context().trace_id == sent.trace_id


def test_extract_without_headers_starts_a_new_trace() -> None:
    with telemetry.tracer("quark.test").start_as_current_span("outer"):
        for headers in (None, {}, {"traceparent": "garbage"}):
            ctx = telemetry.extract_trace_context(headers)
            assert not trace.get_current_span(ctx).get_span_context().is_valid


# --------------------------------------------------------------------------- logging


@pytest.fixture
def log_stream() -> Iterator[tuple[str, io.StringIO]]:
    """setup_logging for a fresh service, its handler writing to a StringIO; root logger restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    service = f"telemetry-log-{uuid.uuid4().hex[:10]}"
    telemetry.setup_logging(service, level="DEBUG")
    telemetry.setup_logging(service, level="DEBUG")  # idempotent
    ours = [h for h in root.handlers if getattr(h, "_quark_handler", False)]
    assert len(ours) == 1
    assert isinstance(ours[0], logging.StreamHandler)
    buf = io.StringIO()
    ours[0].setStream(buf)
    try:
        yield service, buf
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_log_line_carries_the_active_trace(log_stream: tuple[str, io.StringIO]) -> None:
    service, buf = log_stream
    log = logging.getLogger("quark.test.json")
    with telemetry.tracer("quark.test").start_as_current_span("op") as span:
        log.info("hello %s", "world", extra={"post_id": 42})
    log.warning("outside any span")

    inside, outside = lines(buf)
    ctx = span.get_span_context()
    assert inside["trace_id"] == trace.format_trace_id(ctx.trace_id)
    assert inside["span_id"] == trace.format_span_id(ctx.span_id)
    assert inside["message"] == "hello world"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "quark.test.json"
    assert inside["service"] == service
    assert inside["post_id"] == 42
    assert inside["time"].endswith("+00:00")
    assert "exc_info" not in inside
    assert outside["trace_id"] is None and outside["span_id"] is None


def test_json_log_line_includes_the_exception(log_stream: tuple[str, io.StringIO]) -> None:
    _, buf = log_stream
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("quark.test.json").exception("it failed")
    (line,) = lines(buf)
    assert line["level"] == "ERROR"
    assert line["message"] == "it failed"
    assert "Traceback" in line["exc_info"] and "ValueError: bad value" in line["exc_info"]


async def test_request_logs_carry_the_request_trace_and_service(
    service: str, log_stream: tuple[str, io.StringIO]
) -> None:
    _, buf = log_stream  # set up for another service: the request's own service wins
    app = make_app(service)
    async with client(app) as c:
        assert (await c.get("/api/v1/posts/5")).status_code == 200
    (line,) = (entry for entry in lines(buf) if entry["logger"] == "quark.test.handler")
    assert line["message"] == "fetching post 5"
    assert line["trace_id"] == app.state.seen["trace_id"]
    assert line["service"] == service


def test_text_logs_when_json_is_off() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        telemetry.setup_logging("plain-svc", json_logs=False)
        (handler,) = [h for h in root.handlers if getattr(h, "_quark_handler", False)]
        assert isinstance(handler, logging.StreamHandler)
        buf = io.StringIO()
        handler.setStream(buf)
        with telemetry.tracer("quark.test").start_as_current_span("op") as span:
            logging.getLogger("quark.test.text").info("plain line")
        out = buf.getvalue()
        assert "plain-svc" in out and "plain line" in out
        assert trace.format_trace_id(span.get_span_context().trace_id) in out
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
