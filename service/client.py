"""A small client of the job API (what `anchor-opt submit/status/anchors/cancel/jobs` use).

    api = ApiClient("http://127.0.0.1:8000", token)  # the CLI reads ANCHOR_OPT_API_URL and _TOKEN
    job = api.submit({"name": "voc", "anchors": {"init": "identical"}})
    api.job(job["id"])["progress"]

Every error answer becomes ApiError carrying the API's `detail` (which names the field or the
job); a service that does not answer is an ApiError saying where it looked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(ValueError):
    """The API refused a request (status 4xx/5xx), or no service answered (status None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 30.0):
        self.url = (url or DEFAULT_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"no anchor-opt service answered at {self.url} ({type(exc).__name__}: {exc}); "
                "start one with `anchor-opt serve` or set ANCHOR_OPT_API_URL"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text
            if response.status_code == 401:  # the service's advice is for raw HTTP; this is the CLI's
                how = "give the CLI a token with --token or ANCHOR_OPT_API_TOKEN (anchor-opt token makes one)"
                detail = f"{detail}; {how}"
            raise ApiError(f"{method} {path}: {response.status_code} {detail}", response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- the API -------------------------------------------------------------------------------------

    def submit(self, spec: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/jobs", json=spec, headers=headers)

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}")

    def jobs(self, state: str | None = None, page_size: int = 100) -> Iterator[dict]:
        """Every job of the caller, newest first, following the cursor from page to page."""
        params: dict[str, Any] = {"limit": page_size} | ({"state": state} if state else {})
        while True:
            page = self._json("GET", "/jobs", params=params)
            yield from page["items"]
            if not page["next_cursor"]:
                return
            params["cursor"] = page["next_cursor"]

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def anchors(self, job_id: str, since_step: int | None = None) -> list[dict]:
        params = {"since_step": since_step} if since_step is not None else {}
        return self._json("GET", f"/jobs/{job_id}/anchors", params=params)["snapshots"]

    def result(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}/result")

    def logs(self, job_id: str, tail: int | None = None) -> list[str]:
        params = {"tail": tail} if tail else {}
        return self._json("GET", f"/jobs/{job_id}/logs", params=params)["lines"]

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._request("GET", f"/jobs/{job_id}/artifacts/{name}").content

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def plot(self, job_id: str) -> bytes:
        return self._request("GET", f"/jobs/{job_id}/anchors/plot.png").content

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False
