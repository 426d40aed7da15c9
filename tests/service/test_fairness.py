"""service.fairness: tenants in turn, per-tenant limits, and a reason for every job that waits."""

from __future__ import annotations

from service.fairness import Job, TenantLimits, plan


def none(tenant: str) -> None:
    return None


def jobs(tenant: str, n: int, gpus: float = 0) -> list[Job]:
    return [Job(f"{tenant}-{i}", tenant, gpus) for i in range(n)]


def test_one_tenants_backlog_does_not_starve_the_others():
    """Tenant a queued 50 jobs first; b and c one each afterwards. With 2 slots, b and c are among
    the first jobs to start, not after all of a's."""
    queued = jobs("a", 50) + jobs("b", 1) + jobs("c", 1)
    first = plan(queued, [], max_running=2, limits=none)
    assert first.start == ["a-0", "b-0"]
    # The next free slot goes on from b: c, then a again.
    active = [Job("a-0", "a", 0), Job("b-0", "b", 0)]
    rest = [j for j in queued if j.id not in first.start]
    second = plan(rest, active[1:], max_running=2, limits=none, last_tenant=first.last_tenant)
    assert second.start == ["c-0"]
    old_fifo_position = [j.id for j in queued].index("c-0")
    assert old_fifo_position == 51  # behind all of a's under one global FIFO


def test_every_waiting_job_says_why_in_serving_order():
    queued = jobs("a", 3) + jobs("b", 2)
    p = plan(queued, [Job("x", "c", 0)], max_running=2, limits=none)
    assert p.start == ["a-0"]
    assert set(p.waiting) == {"a-1", "a-2", "b-0", "b-1"}
    assert p.waiting["b-0"].endswith("0 job(s) ahead of this one")  # b is next after a was served
    assert p.waiting["a-1"].endswith("1 job(s) ahead of this one")
    assert p.waiting["b-1"].endswith("2 job(s) ahead of this one")
    assert "all 2 of the service's job slots are taken" in p.waiting["a-2"]


def test_a_tenant_at_its_running_limit_waits_while_others_start():
    limits = {"a": TenantLimits(max_running=1)}
    p = plan(jobs("a", 3) + jobs("b", 2), [Job("a-old", "a", 0)], max_running=4, limits=limits.get)
    assert p.start == ["b-0", "b-1"]
    assert p.waiting["a-0"] == "queued: tenant 'a' has 1 of its 1 running job(s)"
    assert p.waiting["a-2"] == p.waiting["a-0"]


def test_gpu_budget_and_strict_order_within_a_tenant():
    limits = {"a": TenantLimits(max_gpus=4)}
    queued = [Job("big", "a", 4), Job("small", "a", 1)]
    p = plan(queued, [Job("run", "a", 2)], max_running=5, limits=limits.get)
    assert p.start == []  # the small job does not overtake the big one
    assert p.waiting["big"] == "queued: tenant 'a' uses 2 of its 4 GPUs and this job needs 4"
    assert p.waiting["small"] == p.waiting["big"]
    assert plan(queued, [], max_running=5, limits=limits.get).start == ["big"]


def test_a_limit_is_reported_even_when_the_slots_are_full():
    p = plan(jobs("a", 1), [Job("a-x", "a", 0)], max_running=1, limits={"a": TenantLimits(max_running=1)}.get)
    assert p.start == [] and "tenant 'a' has 1 of its 1" in p.waiting["a-0"]
