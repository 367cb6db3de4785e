"""`create_service_app`: everything a module needs to dock, so its own app.py is a few lines.

A service describes itself once as a :class:`QuarkModule` (name, settings class,
runtime factory, routers, models, consumers, hooks); the factory wires the lifespan
(database, NATS, Redis, the module's runtime, outbox relay, consumers, token verifier,
hub registration), the health and metrics endpoints, problem+json errors and telemetry.

A module's own state (clients, limiters, caches, clock) lives in one typed runtime object
that its `runtime` factory builds once the connections are up. Routes get it through a
`Annotated[MyRuntime, RuntimeDep]` parameter, event handlers as their first argument, hooks as
`ctx.runtime`: no module keeps globals or string-keyed dictionaries to find its own state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, Protocol, TypeVar, runtime_checkable

import httpx
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse, Response
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quark_sdk import telemetry
from quark_sdk.auth import JWKSCache, TokenVerifier, install_token_verifier
from quark_sdk.config import ServiceSettings
from quark_sdk.db import Database, ensure_database_async, upgrade_database_async
from quark_sdk.errors import install_error_handlers, is_unavailable_error, problem_response
from quark_sdk.events import Consumer, ConsumerRunner, EventBus
from quark_sdk.inprocess import LocalGateway, api_client
from quark_sdk.operator import operator_router
from quark_sdk.outbox import OutboxRelay
from quark_sdk.registry import Manifest, RegistryClient
from quark_sdk.replay import parse_replay
from quark_sdk.revocation import RevokedSubjects
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.app")

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
RuntimeT = TypeVar("RuntimeT")

Hook = Callable[["ServiceContext[Any, Any]"], Awaitable[None]]
RuntimeFactory = Callable[["ServiceContext[SettingsT, RuntimeT]"], Awaitable[RuntimeT]]


@runtime_checkable
class ClosableRuntime(Protocol):
    """A runtime holding resources (HTTP clients, pools) closes them here; the SDK calls it on shutdown."""

    async def aclose(self) -> None: ...


class _NotStarted:
    def __repr__(self) -> str:
        return "<runtime not started>"


_NOT_STARTED: Any = _NotStarted()


@dataclass(frozen=True)
class ModuleCommand:
    """A `quark <name>` sub-command a module contributes (e.g. auth's `create-admin`).

    `run` gets the parsed arguments and a started context (database, Redis, NATS; no
    consumers, relay or registration: events it writes are published by the running service).
    """

    name: str
    help: str
    run: Callable[[Any, ServiceContext[Any, Any]], Awaitable[int]]
    add_arguments: Callable[[Any], None] = lambda parser: None


@dataclass
class QuarkModule(Generic[SettingsT, RuntimeT]):
    """Everything the SDK needs to know to run one module.

    `runtime` builds the module's typed state once its connections are up (before the startup
    hooks and the first event); modules with no state of their own leave it out (runtime None).
    """

    name: str
    settings_cls: type[SettingsT]
    root: Path  # the module's folder: module-manifest.yaml, migrations/
    runtime: RuntimeFactory[SettingsT, RuntimeT] | None = None
    routers: Sequence[APIRouter] = ()
    metadata: MetaData | None = None
    consumers: Sequence[Consumer[RuntimeT]] = ()
    on_startup: Sequence[Hook] = ()
    on_shutdown: Sequence[Hook] = ()
    background: Sequence[Hook] = ()  # long-running tasks (schedulers, cleaners), cancelled on shutdown
    commands: Sequence[ModuleCommand] = ()
    # Extra readiness checks beside database/redis/nats: (name, probe); a probe raises when not ready.
    readiness_checks: Sequence[tuple[str, Callable[[ServiceContext[Any, Any]], Awaitable[object]]]] = ()
    title: str | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / "module-manifest.yaml"

    @property
    def migrations_dir(self) -> Path:
        return self.root / "migrations"

    def manifest(self) -> Manifest:
        return Manifest.load(self.manifest_path)

    @property
    def database_name(self) -> str:
        return self.name.replace("-", "_")


@dataclass
class ServiceContext(Generic[SettingsT, RuntimeT]):
    """What a running module holds; found at `app.state.quark` and via `get_context`."""

    module: QuarkModule[SettingsT, RuntimeT]
    settings: SettingsT
    manifest: Manifest
    db: Database | None = None
    bus: EventBus | None = None
    redis: aioredis.Redis | None = None
    relay: OutboxRelay | None = None
    consumers: list[ConsumerRunner] = field(default_factory=list)
    registry: RegistryClient | None = None
    verifier: TokenVerifier | None = None
    revocations: RevokedSubjects | None = None
    started_at: float = field(default_factory=time.time)
    # Where the hub should probe this instance (the embedded station serves /health/<module>).
    health_url: str | None = None
    # The gateway of the embedded station this module runs in (`quark dev` sets it before the lifespan);
    # None when the module serves alone (the fleet).
    local_gateway: LocalGateway | None = None
    _runtime: Any = _NOT_STARTED
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.module.name

    @property
    def runtime(self) -> RuntimeT:
        """The module's typed state, built by its `runtime` factory when the context started."""
        if self._runtime is _NOT_STARTED:
            raise RuntimeError(f"module {self.name}: runtime not started")
        rt: RuntimeT = self._runtime
        return rt

    @property
    def runtime_started(self) -> bool:
        return self._runtime is not _NOT_STARTED

    def key(self, *parts: str) -> str:
        """A Redis key in this module's space (namespaced like events, so tests never collide)."""
        ns = self.settings.event_namespace
        return ":".join(["quark", *([ns] if ns else []), self.name, *parts])

    def api_client(self, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client for the station's public API at `base_url` (kwargs as `httpx.AsyncClient`).

        In the embedded station, when `base_url` is the station's own gateway, each call goes to the gateway
        app in-process (`quark_sdk.inprocess`: the same public request and routing, no loopback HTTP);
        otherwise — the fleet, any other URL — it is plain HTTP."""
        return api_client(self.local_gateway, base_url, **kwargs)

    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError(f"module {self.name} has no database")
        return self.db

    def cache(self) -> aioredis.Redis:
        if self.redis is None:
            raise RuntimeError(f"module {self.name} has no Redis connection")
        return self.redis

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}

        async def check(name: str, probe: Callable[[], Awaitable[Any]]) -> None:
            try:
                # Below the hub's default probe timeout (2 s): a slow dependency is named, not a timed-out probe.
                async with asyncio.timeout(1.5):
                    await probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failing: {type(exc).__name__}"

        probes: list[Awaitable[None]] = []
        if self.db is not None:
            probes.append(check("database", self.db.ping))
        if self.redis is not None:
            redis_client = self.redis
            probes.append(check("redis", lambda: redis_client.ping()))
        if self.bus is not None:
            bus = self.bus

            async def nats_probe() -> None:
                if not bus.is_connected:
                    raise ConnectionError("not connected")
                await bus.nc.flush(timeout=1)

            probes.append(check("nats", nats_probe))
        for name, module_probe in self.module.readiness_checks:
            probes.append(check(name, lambda p=module_probe: p(self)))  # type: ignore[misc]
        await asyncio.gather(*probes)
        return checks


def get_context(request: HTTPConnection) -> ServiceContext[Any, Any]:
    ctx: ServiceContext[Any, Any] = request.app.state.quark
    return ctx


async def current_runtime(request: HTTPConnection) -> Any:
    """The running module's runtime (async: a sync dependency would cost a thread-pool hop per request)."""
    return get_context(request).runtime


async def current_settings(request: HTTPConnection) -> Any:
    return get_context(request).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request; service functions open their own transaction."""
    async with get_context(request).database().session() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for a request that only reads (`Database.reads`: no BEGIN / ROLLBACK round trips)."""
    async with get_context(request).database().reads() as session:
        yield session


Context = Annotated[ServiceContext[Any, Any], Depends(get_context)]
DbSession = Annotated[AsyncSession, Depends(get_session)]
# For routes that only read (no writes, no locks, nothing that needs to be atomic): see `Database.reads`.
ReadSession = Annotated[AsyncSession, Depends(get_read_session)]
# Typed once in each module: `Runtime = Annotated[BlogRuntime, RuntimeDep]` (and `SettingsDep` alike).
RuntimeDep: DependsParam = Depends(current_runtime)
SettingsDep: DependsParam = Depends(current_settings)


def build_verifier(settings: ServiceSettings) -> TokenVerifier:
    auth_jwks = settings.auth_jwks_url or f"{settings.gateway_url}/api/v1/auth/.well-known/jwks.json"
    hub_base = settings.hub_url or settings.gateway_url
    hub_jwks = settings.hub_jwks_url or f"{hub_base}/api/v1/hub/.well-known/jwks.json"
    return TokenVerifier(
        {"quark-auth": JWKSCache(auth_jwks), "quark-hub": JWKSCache(hub_jwks)},
        audience=settings.token_audience,
        cache_ttl=settings.token_cache_ttl,
        require_verified_to_write=settings.require_verified_to_write,
    )


async def start_context(ctx: ServiceContext[Any, Any], *, migrate: bool = False, register: bool = True,
                        workers: bool = True) -> None:
    """Bring up a module's connections and, with `workers`, its relay, consumers and background jobs."""
    s, module, manifest = ctx.settings, ctx.module, ctx.manifest
    if module.metadata is not None or manifest.requires.database:
        url = s.service_database_url(module.database_name)
        if s.env != "prod" and s.database_url is None:
            await _ensure_database(url)  # a module docking for the first time: its database, not a traceback
        if migrate and module.migrations_dir.exists():
            await upgrade_database_async(module.migrations_dir, url)
        ctx.db = Database(url, service=module.name, pool_size=s.db_pool_size, max_overflow=s.db_max_overflow)
    if manifest.requires.cache:
        ctx.redis = aioredis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2,
                                      health_check_interval=15)
        if ctx.verifier is not None and workers:
            ctx.revocations = RevokedSubjects(ctx.redis, namespace=s.event_namespace)
            await ctx.revocations.start()
            ctx.verifier.revocations = ctx.revocations
    if manifest.requires.event_bus or module.consumers:
        ctx.bus = EventBus(s.nats_url, service=module.name, namespace=s.event_namespace)
        await ctx.bus.connect(wait=True, timeout=5)
        if ctx.db is not None and workers:
            ctx.relay = OutboxRelay(ctx.db, ctx.bus, service=module.name, poll_interval=s.outbox_poll_interval,
                                    linger=s.outbox_linger)
            await ctx.relay.start()
    # The runtime and the startup hooks come before the first event arrives.
    ctx._runtime = await module.runtime(ctx) if module.runtime is not None else None
    for hook in module.on_startup:
        await hook(ctx)
    if workers:
        await start_consumers(ctx)
    if not workers:
        return
    for job in module.background:
        ctx._tasks.append(asyncio.create_task(_supervised(job, ctx), name=f"{module.name}-{job.__name__}"))
    if register and s.hub_url and s.register_with_hub:
        ctx.registry = RegistryClient(
            s.hub_url, manifest.with_contracts(), instance_url=s.public_instance_url(),
            health_url=ctx.health_url or s.public_instance_url() + manifest.health_check,
            heartbeat_interval=s.heartbeat_interval,
            token=s.hub_registration_token.get_secret_value() if s.hub_registration_token else None,
            on_drain=lambda: stop_consumers(ctx), on_resume=lambda: start_consumers(ctx),
        )
        await ctx.registry.start()


async def _ensure_database(url: str) -> None:
    try:
        await ensure_database_async(url)
    except Exception as exc:  # no CREATEDB, server down: the engine's own error follows, said plainly
        log.warning("could not check or create the database (%r)", exc)


async def start_consumers(ctx: ServiceContext[Any, Any]) -> None:
    """Run the module's consumers (at start, and again when the hub enables a drained module)."""
    if ctx.bus is None or ctx.db is None or ctx.consumers:
        return
    s = ctx.settings
    replay = parse_replay(ctx.manifest.replay)
    for consumer in ctx.module.consumers:
        runner = ConsumerRunner(consumer, bus=ctx.bus, db=ctx.db, service=ctx.module.name,
                                max_deliver=s.consumer_max_deliver, runtime=ctx._runtime, replay=replay)
        await runner.start()
        ctx.consumers.append(runner)


async def stop_consumers(ctx: ServiceContext[Any, Any]) -> None:
    """Stop pulling (a drain: the hub disabled the module or retired this version); unacked messages stay in
    JetStream for whoever consumes next, and the inbox keeps every event applied once."""
    runners, ctx.consumers = list(ctx.consumers), []
    for runner in runners:
        await runner.stop()


async def stop_context(ctx: ServiceContext[Any, Any]) -> None:
    if ctx.registry is not None:
        await ctx.registry.stop()
    await cancel_and_wait(ctx._tasks)
    ctx._tasks.clear()
    for hook in reversed(ctx.module.on_shutdown):
        try:
            await hook(ctx)
        except Exception:
            log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
    for runner in ctx.consumers:
        await runner.stop()
    ctx.consumers.clear()
    if ctx.relay is not None:
        await ctx.relay.stop()
    runtime, ctx._runtime = ctx._runtime, _NOT_STARTED
    if isinstance(runtime, ClosableRuntime):
        try:
            await runtime.aclose()
        except Exception:
            log.exception("closing the runtime of %s failed", ctx.name)
    if ctx.revocations is not None:
        await ctx.revocations.stop()
        ctx.revocations = None
    if ctx.bus is not None:
        await ctx.bus.close()
    if ctx.redis is not None:
        with contextlib.suppress(Exception):
            await ctx.redis.aclose()
    if ctx.db is not None:
        await ctx.db.dispose()


async def _supervised(job: Hook, ctx: ServiceContext[Any, Any]) -> None:
    """Keep a background job alive: log and restart it after a crash."""
    delay = 0.5
    while True:
        try:
            await job(ctx)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_unavailable_error(exc):
                log.exception("background job %s of %s crashed; restarting in %.1fs", job.__name__, ctx.name, delay)
            elif delay == 0.5:  # an outage of a backing server: said once, without a traceback
                log.warning("background job %s of %s waits for a backing server (%r); retrying with back-off",
                            job.__name__, ctx.name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def create_service_app(module: QuarkModule[Any, Any], settings: ServiceSettings | None = None, *,
                       migrate_on_start: bool | None = None, health_url: str | None = None) -> FastAPI:
    """The FastAPI app of one module, ready to dock."""
    settings = settings or module.settings_cls.load()
    manifest = module.manifest()
    telemetry.setup_logging(module.name, level=settings.log_level, json_logs=settings.json_logs)
    telemetry.setup_tracing(module.name)
    ctx: ServiceContext[Any, Any] = ServiceContext(module=module, settings=settings, manifest=manifest,
                                                   health_url=health_url)
    migrate = settings.env != "prod" if migrate_on_start is None else migrate_on_start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await start_context(ctx, migrate=migrate)
            yield
        finally:
            await stop_context(ctx)

    app = FastAPI(
        title=module.title or f"Quark {module.name}",
        version=manifest.version,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # The SDK instruments every module (telemetry.instrument_app); FastAPI's own OpenTelemetry
        # support would trace and measure each request a second time (~7% of a home-timeline request).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.quark = ctx
    install_error_handlers(app)
    install_token_verifier(app, build_verifier(settings))
    ctx.verifier = app.state.token_verifier
    app.include_router(health_router(), include_in_schema=False)
    app.include_router(operator_router(), include_in_schema=False)
    for router in module.routers:
        app.include_router(router)
    telemetry.instrument_app(app, module.name)
    return app


GC_YOUNG_THRESHOLD = 10_000


class FreezeHeapAfterStartup:
    """ASGI wrapper for a serving process: once every lifespan has started, move the objects made so
    far (modules, routes, models, pools) out of the garbage collector's sight with `gc.freeze()`, and
    collect the youngest generation every 10,000 allocations instead of 700.

    Each full collection stalls the event loop for as long as it walks the heap: in bench/messaging.py
    (1,000 WebSockets open) they came every few seconds and took 150-250 ms — far beyond the DM latency
    target. Frozen, the walk is ~40% shorter; with the higher threshold, none happened in a 10 s run.
    Only for processes that serve until they exit — frozen objects are never freed, so in-process
    test stations do not use it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
                gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            await send(message)

        await self.app(scope, receive, send_wrapper)


def health_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        ctx = get_context(request)
        return {"status": "ok", "module": ctx.name, "version": ctx.manifest.version,
                "uptime_seconds": round(time.time() - ctx.started_at, 1)}

    @router.get("/health/ready")
    async def ready(request: Request) -> Response:
        ctx = get_context(request)
        checks = await ctx.readiness()
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ok", "module": ctx.name, "checks": checks})
        return problem_response(503, detail="not ready: " + ", ".join(k for k, v in checks.items() if v != "ok"),
                                extra={"module": ctx.name, "checks": checks}, headers={"Retry-After": "1"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return telemetry.metrics_response()

    return router
