"""The FastAPI application: `create_app(settings)` wires the store, the scheduler, auth, limits,
errors and metrics around the job routes (service.routes).

    uvicorn --factory service.app:create_app        # or: anchor-opt serve

Unauthenticated: /healthz (the process is up), /readyz (storage and Ray answer: ok or unavailable
each, the reasons only in the log), /docs and /openapi.json, and /metrics (Prometheus) only with
`metrics_public`. Everything else needs a bearer token, checked before the body is read
(service.auth.AuthenticateFirst), unless no tokens are configured: open mode, served only while the
server listens on loopback alone (service.bind_guard). Every error body is a `Problem` (status,
detail, errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.auth import AuthenticateFirst, Authenticator, AuthError
from service.bind_guard import LoopbackGuard
from service.capacity import driver_env
from service.fairness import TenantLimits
from service.launcher import RayUnavailable, storage_env
from service.limits import BodyLimit
from service.plots import AnchorPlots
from service.routes import router
from service.scheduler import Scheduler
from service.settings import ServiceSettings, load_settings
from service.telemetry import Telemetry
from service.views import Records
from trainer.contract.storage import InvalidKey, NotFound, StorageError, open_storage, parse_uri
from trainer.contract.store import JobStore

log = logging.getLogger(__name__)

# Seconds a client is asked to wait after a 503 (storage or Ray unreachable): about as long as the
# storage client's own retries take, and a few scheduler ticks.
RETRY_AFTER_S = 5
_RETRY = {"Retry-After": str(RETRY_AFTER_S)}


@dataclass
class Context:
    settings: ServiceSettings
    store: JobStore
    records: Records
    scheduler: Scheduler
    plots: AnchorPlots
    auth: Authenticator
    launcher: object


def absolute_store_uri(uri: str) -> str:
    """Local store roots as absolute paths: Ray jobs run in another working directory."""
    where = parse_uri(uri)
    return str(Path(where).resolve()) if isinstance(where, Path) else uri


def default_launcher(settings: ServiceSettings):
    """Ray's job server at `ray_address`, or the embedded head: a local Ray head that only this
    service can drive (token, loopback, no secrets in its environment: service.ray_head), started
    again when it dies (service.launcher.EmbeddedRay)."""
    from service.launcher import EmbeddedRay, LocalRayHead, RayJobs

    if settings.ray_address:
        return RayJobs(settings.ray_address)
    head = LocalRayHead(
        settings.ray_temp_dir,
        num_cpus=settings.ray_num_cpus,
        num_gpus=settings.limits.embedded_gpus,
        dashboard_port=settings.ray_dashboard_port,
        env=storage_env(settings.s3, secrets=False),
        s3=settings.s3,
    )
    return EmbeddedRay(head)


def create_app(settings: ServiceSettings | None = None, launcher=None, schedule: bool = True) -> FastAPI:
    """The app. `launcher` (service.launcher.RayJobs) defaults to the configured Ray or a local head;
    with `schedule=False` no job is started or reconciled (tests of the API surface alone)."""
    settings = settings or load_settings()
    store_uri = absolute_store_uri(settings.store_uri)
    store = JobStore(open_storage(store_uri, settings.s3))
    records = Records(store, settings.record_cache_bytes, settings.view_cache_bytes)
    telemetry = Telemetry(store, records, settings.metrics_cache_s)
    guard = LoopbackGuard() if settings.open_mode else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = app.state.ctx
        if ctx.launcher is None and schedule:
            ctx.launcher = ctx.scheduler.launcher = default_launcher(settings)
        if schedule:
            ctx.scheduler.start()
        # Open mode: the sockets the server is about to listen on decide whether it may serve at all.
        watch = asyncio.create_task(guard.watch()) if guard else None
        yield
        if watch:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        ctx.scheduler.stop()

    app = FastAPI(
        title="anchor-opt",
        summary="Train detectors that learn their anchor boxes (Zhong et al., WACV 2020), as jobs on Ray.",
        version="0.1.0",
        lifespan=lifespan,
    )
    scheduler = Scheduler(
        store,
        records,
        launcher,
        store_uri,
        settings.max_running_jobs,
        settings.scheduler_interval_s,
        job_env=storage_env(settings.s3, secrets=False) | driver_env(settings),
        limits=lambda tenant: TenantLimits(
            settings.tenant_limit(tenant, "max_running_jobs"), settings.tenant_limit(tenant, "max_gpus")
        ),
    )
    app.state.ctx = Context(settings, store, records, scheduler, AnchorPlots(store),
                            Authenticator(settings.tokens), launcher)  # fmt: skip

    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside the body limit: an anonymous request is a 401 before anything reads its body.
    docs = (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
    public = {"/healthz", "/readyz", *filter(None, docs), *(["/metrics"] if settings.metrics_public else [])}
    app.add_middleware(AuthenticateFirst, auth=app.state.ctx.auth, public=public, guard=guard)
    telemetry.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "storage or Ray unreachable"}})
    def readyz() -> JSONResponse:
        """Storage and Ray both answer: each check is ok or unavailable. Why not is in the log only:
        an anonymous probe must not read storage error text (endpoints, bucket names, keys)."""
        checks = {}
        try:
            store.storage.exists("jobs/.readyz")
            checks["storage"] = "ok"
        except Exception as exc:
            log.warning("readiness: storage unavailable: %s: %s", type(exc).__name__, exc)
            checks["storage"] = "unavailable"
        ray = app.state.ctx.launcher
        try:
            ray_ok = ray is not None and ray.ping()
        except Exception as exc:
            log.warning("readiness: Ray unavailable: %s: %s", type(exc).__name__, exc)
            ray_ok = False
        checks["ray"] = "ok" if ray_ok else "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
        )

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus: requests by route and status, latencies, jobs by state (counted at most every
        `metrics_cache_s`). Needs a token unless `metrics_public`: the counts span every tenant."""
        body, media = telemetry.render()
        return Response(body, media_type=media)

    _install_errors(app)
    return app


def _problem(
    status: int, detail: str, errors: list | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"status": status, "detail": detail, "errors": errors}
    return JSONResponse(body, status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return _problem(401, exc.detail, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
                  for e in exc.errors()]  # fmt: skip
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        loc = [str(p) for p in first["loc"]]
        if first.get("type") == "json_invalid":  # loc is ["body", <character offset>]
            loc = ["body", f"character {loc[-1]}"] if len(loc) > 1 else ["body"]
        elif loc[:1] == ["body"] and len(loc) > 1:  # a field of the body: its path says enough
            loc = loc[1:]
        where = ".".join(loc) or "request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _problem(422, f"{where}: {first['msg']}{more}", errors)

    # An outage is not the request's fault, nor a bug: 503 and when to try again. The detail says
    # which dependency; the cause (an endpoint, a bucket, Ray's answer) stays in the service log.
    @app.exception_handler(StorageError)
    async def storage_down(request: Request, exc: StorageError) -> JSONResponse:
        log.error("%s %s: storage unavailable: %s", request.method, request.url.path, exc)
        return _problem(503, "the job store is unavailable; try again later", headers=_RETRY)

    @app.exception_handler(RayUnavailable)
    async def ray_down(request: Request, exc: RayUnavailable) -> JSONResponse:
        log.error("%s %s: Ray unavailable: %s", request.method, request.url.path, exc)
        return _problem(503, "the Ray cluster is unavailable; try again later", headers=_RETRY)

    @app.exception_handler(NotFound)  # a job, or one of its documents, deleted while a request read it
    async def gone(request: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, "not found (deleted while it was read)")

    @app.exception_handler(Exception)
    @app.exception_handler(InvalidKey)  # a key built wrong is a bug here, not an outage
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, f"internal error ({type(exc).__name__}); the service log has the details")
