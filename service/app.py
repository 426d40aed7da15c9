"""The FastAPI application: `create_app(settings)` wires the store, the scheduler, auth, limits,
errors and metrics around the job routes (service.routes).

    uvicorn --factory service.app:create_app        # or: anchor-opt serve

Unauthenticated: /healthz (the process is up), /readyz (storage and Ray answer), /metrics
(Prometheus), /docs and /openapi.json. Everything under /jobs needs a bearer token unless no tokens
are configured (open mode, loopback only). Every error body is a `Problem` (status, detail, errors).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.auth import Authenticator, AuthError
from service.launcher import RayUnavailable, storage_env
from service.limits import BodyLimit
from service.plots import AnchorPlots
from service.routes import router
from service.scheduler import Scheduler
from service.settings import ServiceSettings, load_settings
from service.telemetry import Telemetry
from service.views import Records
from trainer.jobs.store import JobStore
from trainer.storage import InvalidKey, NotFound, StorageError, open_storage, parse_uri

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
    """Ray's job server at `ray_address`, or a local Ray head started beside the service (which
    gets the service's S3 settings, credentials included, in its environment)."""
    from service.launcher import LocalRayHead, RayJobs

    address = settings.ray_address or LocalRayHead().ensure(
        temp_dir=settings.ray_temp_dir,
        num_cpus=settings.ray_num_cpus,
        dashboard_port=settings.ray_dashboard_port,
        env=storage_env(settings.s3, secrets=True),
    )
    return RayJobs(address)


def create_app(settings: ServiceSettings | None = None, launcher=None, schedule: bool = True) -> FastAPI:
    """The app. `launcher` (service.launcher.RayJobs) defaults to the configured Ray or a local head;
    with `schedule=False` no job is started or reconciled (tests of the API surface alone)."""
    settings = settings or load_settings()
    store_uri = absolute_store_uri(settings.store_uri)
    store = JobStore(open_storage(store_uri, settings.s3))
    records = Records(store, settings.record_cache_bytes, settings.view_cache_bytes)
    telemetry = Telemetry(store, records)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = app.state.ctx
        if ctx.launcher is None and schedule:
            ctx.launcher = ctx.scheduler.launcher = default_launcher(settings)
        if settings.open_mode:
            log.warning("no API tokens configured: serving without authentication, on %s only", settings.host)
        if schedule:
            ctx.scheduler.start()
        yield
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
        job_env=storage_env(settings.s3, secrets=False),
    )
    app.state.ctx = Context(settings, store, records, scheduler, AnchorPlots(store),
                            Authenticator(settings.tokens), launcher)  # fmt: skip

    def authenticate(request: Request) -> None:
        request.state.principal = app.state.ctx.auth.authenticate(request.headers.get("authorization"))

    app.include_router(router, dependencies=[Depends(authenticate)])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    telemetry.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "storage or Ray unreachable"}})
    def readyz() -> JSONResponse:
        """Storage and Ray both answer."""
        checks = {}
        try:
            store.storage.exists("jobs/.readyz")
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"unreachable: {exc}"
        ray = app.state.ctx.launcher
        checks["ray"] = "ok" if ray is not None and ray.ping() else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
        )

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus: requests by route and status, latencies, jobs by state."""
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
