"""The API's own description: a bearer-token security scheme, the errors each route really returns
in the body the service really sends, and Swagger UI served from this package (no CDN), so `/docs`
works on an air-gapped cluster and has an Authorize button.

FastAPI's defaults describe none of that: no security scheme (authentication is a middleware, which
FastAPI does not see), only 200/201 and a 422 in FastAPI's own validation shape (the service answers
every error as `service.schemas.Problem`), and a /docs page that loads its scripts from a CDN.
Swagger UI's files come from the `swagger-ui-bundle` package (Apache-2.0), pinned in pyproject.toml.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.schemas import Problem

DOCS_URL, ASSETS_URL = "/docs", "/docs/assets"
SCHEME = "bearer"
PUBLIC = {"/healthz", "/readyz"}  # no token needed (and /metrics when the operator says so)
QUERIED = {"/jobs", "/jobs/{job_id}/logs", "/jobs/{job_id}/anchors"}  # GETs with bounded query parameters

# Status -> what it means here; which routes can answer it is decided by `_errors_of`.
ERRORS = {
    400: "a bad header (an Idempotency-Key that is not one)",
    401: "no token, or not a valid one (WWW-Authenticate: Bearer)",
    404: "no such job for this tenant, or nothing of that kind yet",
    409: "the job is in a state that does not allow it, or an Idempotency-Key reused with another body",
    413: "the request body is over the service's max_body_bytes",
    422: "invalid input: `detail` names the field, `errors` has every field's path and problem",
    429: "the tenant's queued-job limit is reached",
    503: "the job store or Ray is unreachable for now (Retry-After)",
}


def _errors_of(path: str, method: str) -> list[int]:
    if path in PUBLIC:
        return [503] if path == "/readyz" else []
    codes = [401, 503]
    if "{job_id}" in path:
        codes.append(404)
    if method in ("post", "put", "patch"):
        codes += [413, 422]
    if method == "get" and (
        "tail" in path or "since_step" in path or path == "/jobs" or path.endswith("/logs")
    ):
        codes.append(422)  # query parameters out of range
    if path == "/jobs" and method == "post":
        codes += [400, 409, 429]
    if path.endswith("/cancel") or method == "delete":
        codes.append(409)
    return sorted(set(codes))


def install_openapi(app: FastAPI, metrics_public: bool) -> None:
    """Replaces `app`'s OpenAPI document with the described one, and serves /docs from the package.
    `app` must be made with docs_url=None and redoc_url=None."""
    import swagger_ui_bundle

    public = PUBLIC | ({"/metrics"} if metrics_public else set())

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = doc.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API token (`anchor-opt token` makes one; the CLI reads ANCHOR_OPT_API_TOKEN)",
        }
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        doc["security"] = [{SCHEME: []}]
        for path, operations in doc.get("paths", {}).items():
            for method, op in operations.items():
                if path in public:
                    op["security"] = []  # no token
                responses = op.setdefault("responses", {})
                for code in _errors_of(path, method) if path not in public or path == "/readyz" else []:
                    responses[str(code)] = {
                        "description": ERRORS[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )
