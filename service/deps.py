"""What routes are given (FastAPI's `Annotated` dependencies): the app's context, the caller, and the
job a route acts on, so that no route reads `request` itself.

    def get_job(job: JobDep, ctx: ContextDep) -> JobPublic: ...

`JobDep` is the caller's job of the path's `job_id`: another tenant's job, a missing one and an invalid
id are the same 404; a job deleted from the store while the route reads it is that 404 too, and is
forgotten by the record index (service.handlers, on UnknownJob).

The dependencies are `async`: a plain `def` dependency costs a trip through the thread pool per
request (measured: bench/api_load fell from 593 to 287 requests/s with three of them). The job's
record comes from the cache on the event loop; only a cache miss reads job.json, in the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from service.auth import Authenticator, Principal
from service.launcher import Launcher
from service.plots import AnchorPlots
from service.records import JobNotFound, Records, owned
from service.scheduler import Scheduler
from service.settings import ServiceSettings
from trainer.contract.documents import JobRecord
from trainer.contract.store import JobStore


@dataclass
class Context:
    """Everything the app was built with (service.app.create_app); one per app."""

    settings: ServiceSettings
    store: JobStore
    records: Records
    scheduler: Scheduler
    plots: AnchorPlots
    auth: Authenticator
    launcher: Launcher | None  # None until the lifespan starts the default one


async def context(request: Request) -> Context:
    return request.app.state.ctx


async def caller(request: Request) -> Principal:
    return request.state.principal  # set by service.auth.AuthenticateFirst before the body is read


ContextDep = Annotated[Context, Depends(context)]
CallerDep = Annotated[Principal, Depends(caller)]


def not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"job {job_id!r} not found")


async def owned_job(job_id: str, ctx: ContextDep, who: CallerDep) -> JobRecord:
    """The caller's job `job_id`, else a 404. A cached record is checked on the event loop; reading
    job.json (a cache miss) goes to the thread pool."""
    try:
        if (record := ctx.records.cached(job_id)) is not None:
            return owned(ctx.records, job_id, who.tenant, record)
        return await run_in_threadpool(owned, ctx.records, job_id, who.tenant)
    except (JobNotFound, ValueError):  # ValueError: not even a valid id, or a garbage job.json
        raise not_found(job_id) from None


JobDep = Annotated[JobRecord, Depends(owned_job)]
