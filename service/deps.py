"""What routes are given (FastAPI's `Annotated` dependencies): the app's context, the caller, and the
job a route acts on, so that no route reads `request` itself.

    def get_job(job: JobDep, ctx: ContextDep) -> JobPublic: ...

`JobDep` is the caller's job of the path's `job_id`: another tenant's job, a missing one, an invalid id
and a job deleted from the store while the route reads it are all the same 404 (a deleted job is
forgotten by the record index too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from service.auth import Authenticator, Principal
from service.launcher import Launcher
from service.plots import AnchorPlots
from service.records import JobNotFound, Records, owned
from service.scheduler import Scheduler
from service.settings import ServiceSettings
from trainer.contract.documents import JobRecord
from trainer.contract.store import JobStore, UnknownJob


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


def context(request: Request) -> Context:
    return request.app.state.ctx


def caller(request: Request) -> Principal:
    return request.state.principal  # set by service.auth.AuthenticateFirst before the body is read


ContextDep = Annotated[Context, Depends(context)]
CallerDep = Annotated[Principal, Depends(caller)]


def not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"job {job_id!r} not found")


def owned_job(job_id: str, ctx: ContextDep, who: CallerDep) -> Iterator[JobRecord]:
    """The caller's job `job_id`, else a 404; a 404 too (and the job forgotten) when the route finds
    the job gone from the store while it reads it."""
    try:
        record = owned(ctx.records, job_id, who.tenant)
    except (JobNotFound, ValueError):  # ValueError: not even a valid id, or a garbage job.json
        raise not_found(job_id) from None
    try:
        yield record
    except (UnknownJob, JobNotFound):
        ctx.records.forget(record.id)
        raise not_found(job_id) from None


JobDep = Annotated[JobRecord, Depends(owned_job)]
