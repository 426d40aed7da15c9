"""Prometheus metrics of the service: requests by route and status, request latencies, and jobs by
state (read from the store, so they are right after a restart; counted at most every `max_age_s`,
as counting reads every job's status, and shared by the scrapes in between)."""

from __future__ import annotations

import threading
import time

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from service.records import Records
from trainer.contract.spec import JobState
from trainer.contract.store import JobStore


class Telemetry:
    def __init__(self, store: JobStore, records: Records, max_age_s: float = 5.0):
        self.registry = CollectorRegistry()
        labels = ["method", "route"]
        self.requests = Counter(
            "anchor_opt_http_requests", "HTTP requests", [*labels, "status"], registry=self.registry
        )
        self.latency = Histogram(
            "anchor_opt_http_request_seconds", "HTTP request latency", labels, registry=self.registry
        )
        self.jobs = _JobsByState(store, records, max_age_s)
        self.registry.register(self.jobs)

    def install(self, app: FastAPI) -> None:
        """Counts and times every HTTP request (outermost of the app's middleware but Starlette's own
        error handler, so a crash is counted as the 500 it becomes)."""
        app.add_middleware(_Measure, telemetry=self)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _JobsByState:
    def __init__(self, store: JobStore, records: Records, max_age_s: float):
        self.store, self.records, self.max_age_s = store, records, max_age_s
        self._counts: dict[JobState, int] | None = None
        self._counted_at = 0.0
        self._lock = threading.Lock()  # scrapes at once: one counts, the others wait and reuse it

    def counts(self) -> dict[JobState, int]:
        with self._lock:
            if self._counts is None or time.monotonic() - self._counted_at >= self.max_age_s:
                self._counts = self._count()
                self._counted_at = time.monotonic()
            return dict(self._counts)

    def _count(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        self.records.refresh()
        for entry in self.records.newest_first():
            status = self.records.status(entry.id)  # None: gone, or unreadable (logged): not counted
            if status is not None:
                counts[status.state] += 1
        return counts

    def collect(self):
        family = GaugeMetricFamily("anchor_opt_jobs", "Jobs by state", labels=["state"])
        for state, n in self.counts().items():
            family.add_metric([state.value], n)
        yield family


class _Measure:
    """Plain ASGI middleware: no per-request task or response stream (as `@app.middleware` has), the
    status taken from the response as it is sent, the time when the app is done with the request."""

    def __init__(self, app, telemetry: Telemetry):
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # unless a response starts: the app raised, and the error handler answers 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")  # the template, not the job id: bounded labels
            self.telemetry.observe(scope["method"], path, status, time.perf_counter() - start)
