"""What every app has beside the job routes: health (/healthz, /readyz), Prometheus /metrics, and the
error handlers that make every error body a `Problem` (status, detail, errors).

An outage is not the request's fault, nor a bug: storage or Ray unreachable is a 503 with when to try
again; the detail says which dependency, the cause (an endpoint, a bucket, Ray's answer) stays in the
service log.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.auth import AuthError
from service.deps import ContextDep
from service.launcher import RayUnavailable
from service.records import JobNotFound
from trainer.config_errors import explain
from trainer.contract.layout import JOBS_PREFIX
from trainer.contract.spec import JobSpec
from trainer.contract.storage import InvalidKey, NotFound, StorageError
from trainer.contract.store import UnknownJob

log = logging.getLogger(__name__)

# Seconds a client is asked to wait after a 503 (storage or Ray unreachable): about as long as the
# storage client's own retries take, and a few scheduler ticks.
RETRY_AFTER_S = 5
_RETRY = {"Retry-After": str(RETRY_AFTER_S)}
READINESS_KEY = JOBS_PREFIX + ".readyz"  # never written: an exists() of it shows the store answers

health = APIRouter(tags=["health"])


@health.get("/healthz", tags=["health"])
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@health.get("/readyz", tags=["health"], responses={503: {"description": "storage or Ray unreachable"}})
def readyz(ctx: ContextDep) -> JSONResponse:
    """Storage and Ray both answer: each check is ok or unavailable. Why not is in the log only:
    an anonymous probe must not read storage error text (endpoints, bucket names, keys)."""
    checks = {}
    try:
        ctx.store.storage.exists(READINESS_KEY)
        checks["storage"] = "ok"
    except Exception as exc:
        log.warning("readiness: storage unavailable: %s: %s", type(exc).__name__, exc)
        checks["storage"] = "unavailable"
    ray = ctx.launcher
    try:
        ray_ok = ray is not None and ray.ping()
    except Exception as exc:
        log.warning("readiness: Ray unavailable: %s: %s", type(exc).__name__, exc)
        ray_ok = False
    checks["ray"] = "ok" if ray_ok else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


@health.get("/metrics", tags=["health"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus: requests by route and status, latencies, jobs by state (counted at most every
    `metrics_cache_s`). Needs a token unless `metrics_public`: the counts span every tenant."""
    body, media = request.app.state.telemetry.render()
    return Response(body, media_type=media)


def _message(error: dict) -> str:
    """One pydantic error's message; for a field of a job body, as the CLI says it (one line, what
    was given, `did you mean ...?` for a key that is no setting: trainer.config_errors)."""
    loc = list(error.get("loc", ()))
    if loc[:1] == ["body"] and len(loc) > 1:
        return explain({**error, "loc": loc[1:]}, JobSpec)[1]
    return str(error.get("msg"))


def _problem(
    status: int, detail: str, errors: list | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"status": status, "detail": detail, "errors": errors}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return _problem(401, exc.detail, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type"))}
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

    @app.exception_handler(StorageError)
    async def storage_down(request: Request, exc: StorageError) -> JSONResponse:
        log.error("%s %s: storage unavailable: %s", request.method, request.url.path, exc)
        return _problem(503, "the job store is unavailable; try again later", headers=_RETRY)

    @app.exception_handler(RayUnavailable)
    async def ray_down(request: Request, exc: RayUnavailable) -> JSONResponse:
        log.error("%s %s: Ray unavailable: %s", request.method, request.url.path, exc)
        return _problem(503, "the Ray cluster is unavailable; try again later", headers=_RETRY)

    @app.exception_handler(JobNotFound)
    @app.exception_handler(UnknownJob)  # a job deleted from the store while a route read it
    async def job_gone(request: Request, exc: UnknownJob | JobNotFound) -> JSONResponse:
        job_id = exc.job_id if isinstance(exc, UnknownJob) else exc.args[0]
        if job_id:
            request.app.state.ctx.records.forget(job_id)
        return _problem(404, f"job {job_id!r} not found" if job_id else "job not found")

    @app.exception_handler(NotFound)  # a job, or one of its documents, deleted while a request read it
    async def gone(request: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, "not found (deleted while it was read)")

    @app.exception_handler(Exception)
    @app.exception_handler(InvalidKey)  # a key built wrong is a bug here, not an outage
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, f"internal error ({type(exc).__name__}); the service log has the details")
