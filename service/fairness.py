"""Which queued jobs start now, taking tenants in turn, and why each of the others waits.

One global FIFO let one tenant starve the others (issue 14, finding 7): a tenant that queued fifty
jobs held every slot until all fifty had run. `plan` instead serves tenants round-robin, one job per
tenant per round, oldest first within a tenant, while the service has free slots
(`max_running_jobs`) and the tenant is under its own limits (running jobs, GPUs in use). The
rotation (tenants in name order, as a ring) continues after the tenant served last, so a tenant that
just got a slot goes to the back.

Within a tenant the order is strict: a job that does not fit the tenant's GPU budget waits, and so
do the tenant's later jobs (no small job overtakes a big one for ever). Every job left waiting gets
one line saying why, which the scheduler writes into its status (`waiting`).

Pure functions of what the scheduler read from the store: tested without Ray or storage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Job:
    """A job as the scheduler sees it: launched (running or starting) or waiting to be."""

    id: str
    tenant: str
    gpus: float  # resources.workers x resources.gpus_per_worker


@dataclass(frozen=True)
class TenantLimits:
    max_running: int | None = None  # jobs running at once; None: only the service's limit
    max_gpus: float | None = None  # GPUs of its running jobs together; None: no limit


@dataclass
class Plan:
    start: list[str] = field(default_factory=list)  # job ids to launch now, in this order
    waiting: dict[str, str] = field(default_factory=dict)  # job id -> why it waits
    last_tenant: str | None = None  # the tenant served last (where the next rotation starts after)


def plan(
    queued: list[Job],
    active: list[Job],
    max_running: int,
    limits: Callable[[str], TenantLimits | None],
    last_tenant: str | None = None,
) -> Plan:
    """Jobs of `queued` (oldest first) to start now, given the `active` ones, and why the rest wait.

    `limits(tenant)` gives a tenant's limits (None: none of its own)."""
    running: dict[str, int] = {}
    gpus: dict[str, float] = {}
    for job in active:
        running[job.tenant] = running.get(job.tenant, 0) + 1
        gpus[job.tenant] = gpus.get(job.tenant, 0.0) + job.gpus
    lines: OrderedDict[str, list[Job]] = OrderedDict()
    for job in queued:
        lines.setdefault(job.tenant, []).append(job)
    order = _rotation(list(lines), last_tenant)
    out = Plan(last_tenant=last_tenant)
    free = max_running - len(active)
    blocked: dict[str, str] = {}  # tenant -> why its next job cannot start
    while free > 0:
        progressed = False
        for tenant in order:
            if free <= 0 or tenant in blocked or not lines[tenant]:
                continue
            job = lines[tenant][0]
            reason = _over_limit(job, running.get(tenant, 0), gpus.get(tenant, 0.0), limits(tenant))
            if reason:
                blocked[tenant] = reason
                continue
            lines[tenant].pop(0)
            out.start.append(job.id)
            running[tenant] = running.get(tenant, 0) + 1
            gpus[tenant] = gpus.get(tenant, 0.0) + job.gpus
            out.last_tenant = tenant
            free -= 1
            progressed = True
        if not progressed:
            break
    # Why the rest wait. A blocked tenant's jobs wait for its own limit; the others for a free slot,
    # numbered in the order the next free slots will serve them.
    order = _rotation(list(lines), out.last_tenant)
    for tenant in order:
        if tenant not in blocked and lines[tenant]:  # not reached before the slots ran out: at a limit too?
            head = lines[tenant][0]
            reason = _over_limit(head, running.get(tenant, 0), gpus.get(tenant, 0.0), limits(tenant))
            if reason:
                blocked[tenant] = reason
        for job in lines[tenant] if tenant in blocked else []:
            out.waiting[job.id] = f"queued: {blocked[tenant]}"
    free_queues = [lines[t] for t in order if t not in blocked]
    for ahead, job in enumerate(_interleave(free_queues)):
        slots = f"all {max_running} of the service's job slots are taken"
        out.waiting[job.id] = f"queued: {slots}; {ahead} job(s) ahead of this one"
    return out


def _over_limit(job: Job, running: int, gpus: float, limits: TenantLimits | None) -> str | None:
    if limits is None:
        return None
    if limits.max_running is not None and running >= limits.max_running:
        return f"tenant {job.tenant!r} has {running} of its {limits.max_running} running job(s)"
    if limits.max_gpus is not None and job.gpus > 0 and gpus + job.gpus > limits.max_gpus:
        return (
            f"tenant {job.tenant!r} uses {gpus:g} of its {limits.max_gpus:g} GPUs and this job needs "
            f"{job.gpus:g}"
        )
    return None


def _rotation(tenants: list[str], last: str | None) -> list[str]:
    """`tenants` as a ring in name order, starting after `last` (which may have nothing queued now)."""
    ring = sorted(tenants)
    if last is None:
        return ring
    return [t for t in ring if t > last] + [t for t in ring if t <= last]


def _interleave(queues: list[list[Job]]) -> list[Job]:
    """Round-robin over the queues: the order in which they would be served."""
    out, depth = [], 0
    while any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out
