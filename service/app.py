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
from pathlib import Path

from fastapi import FastAPI

from service.auth import AuthenticateFirst, Authenticator
from service.bind_guard import LoopbackGuard
from service.capacity import driver_env
from service.deps import Context
from service.fairness import TenantLimits
from service.handlers import health, install_error_handlers
from service.launcher import storage_env
from service.limits import BodyLimit
from service.openapi import ASSETS_URL, DOCS_URL, install_openapi
from service.plots import AnchorPlots
from service.records import Records
from service.routes import router
from service.scheduler import Scheduler
from service.settings import ServiceSettings, load_settings
from service.telemetry import Telemetry
from trainer.contract.storage import open_storage, parse_uri
from trainer.contract.store import JobStore

log = logging.getLogger(__name__)


def absolute_store_uri(uri: str) -> str:
    """Local store roots as absolute paths: Ray jobs run in another working directory."""
    where = parse_uri(uri)
    return str(Path(where).resolve()) if isinstance(where, Path) else uri


def default_launcher(settings: ServiceSettings):
    """Ray's job server at `ray_address`, or the embedded head: a local Ray head that only this
    service can drive (token, loopback, no secrets in its environment: service.ray_head), started
    again when it dies (service.launcher.EmbeddedRay)."""
    from service.launcher import EmbeddedRay, LocalRayHead, RayJobs, auth_token

    if settings.ray_address:
        return RayJobs(settings.ray_address, token=auth_token())  # read once, as Ray would
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
        docs_url=None,  # served by service.openapi, from the package: no CDN
        redoc_url=None,
    )
    install_openapi(app, settings.metrics_public)
    scheduler = Scheduler(
        store,
        records,
        launcher,
        store_uri,
        settings.max_running_jobs,
        settings.scheduler_interval_s,
        job_env=storage_env(settings.s3, secrets=False) | driver_env(settings),
        retention_s=None if settings.job_retention_days is None else settings.job_retention_days * 86_400,
        limits=lambda tenant: TenantLimits(
            settings.tenant_limit(tenant, "max_running_jobs"), settings.tenant_limit(tenant, "max_gpus")
        ),
    )
    app.state.ctx = Context(settings, store, records, scheduler, AnchorPlots(store),
                            Authenticator(settings.tokens), launcher)  # fmt: skip

    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside the body limit: an anonymous request is a 401 before anything reads its body.
    docs = (DOCS_URL, ASSETS_URL + "/", app.openapi_url, app.swagger_ui_oauth2_redirect_url)
    public = {"/healthz", "/readyz", *filter(None, docs), *(["/metrics"] if settings.metrics_public else [])}
    app.add_middleware(AuthenticateFirst, auth=app.state.ctx.auth, public=public, guard=guard)
    telemetry.install(app)
    app.state.telemetry = telemetry

    app.include_router(health)
    install_error_handlers(app)
    return app
