"""Prometheus metrics of the service: requests by route and status, request latencies, and jobs by
state (read from the store at scrape time, so they are right after a restart)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from service.views import Records
from trainer.jobs.spec import JobState
from trainer.jobs.store import JobStore


class Telemetry:
    def __init__(self, store: JobStore, records: Records):
        self.registry = CollectorRegistry()
        labels = ["method", "route"]
        self.requests = Counter(
            "anchor_opt_http_requests", "HTTP requests", [*labels, "status"], registry=self.registry
        )
        self.latency = Histogram(
            "anchor_opt_http_request_seconds", "HTTP request latency", labels, registry=self.registry
        )
        self.registry.register(_JobsByState(store, records))

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def measure(request: Request, call_next):
            start = time.perf_counter()
            status = 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                route = request.scope.get("route")
                path = getattr(route, "path", "unmatched")  # the template, not the job id: bounded labels
                self.requests.labels(request.method, path, str(status)).inc()
                self.latency.labels(request.method, path).observe(time.perf_counter() - start)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _JobsByState:
    def __init__(self, store: JobStore, records: Records):
        self.store, self.records = store, records

    def collect(self):
        counts = dict.fromkeys(JobState, 0)
        self.records.refresh()
        for record in self.records.newest_first():
            counts[self.store.status(record.id).state] += 1
        family = GaugeMetricFamily("anchor_opt_jobs", "Jobs by state", labels=["state"])
        for state, n in counts.items():
            family.add_metric([state.value], n)
        yield family
