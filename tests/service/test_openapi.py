"""service.openapi: the document declares the bearer scheme and the errors each route really sends,
and /docs is Swagger UI from the package, over real HTTP, with nothing from a CDN."""

from __future__ import annotations

import re

import pytest

from service.app import create_app
from service.auth import hash_token
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import client, serving

TOKEN = "token-of-docs"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    settings = ServiceSettings(
        store_uri=str(tmp_path_factory.mktemp("store")),
        tokens=[TokenEntry(tenant="docs", sha256=hash_token(TOKEN))],
    )
    with serving(create_app(settings, schedule=False)) as url:
        yield url


def test_the_document_declares_the_bearer_scheme_and_the_public_routes(base):
    doc = client(base).get("/openapi.json").json()  # no token needed for the document itself
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    assert (
        doc["paths"]["/healthz"]["get"]["security"] == [] and doc["paths"]["/readyz"]["get"]["security"] == []
    )
    assert "security" not in doc["paths"]["/jobs"]["post"]  # the global one: a token


def test_each_route_lists_the_errors_it_sends_as_problems(base):
    doc = client(base).get("/openapi.json").json()
    submit = doc["paths"]["/jobs"]["post"]["responses"]
    assert {"201", "400", "401", "409", "413", "422", "429", "503"} <= set(submit)
    problem = {"$ref": "#/components/schemas/Problem"}
    assert all(submit[c]["content"]["application/json"]["schema"] == problem for c in submit if c != "201")
    job = doc["paths"]["/jobs/{job_id}"]["get"]["responses"]
    assert {"401", "404"} <= set(job) and "413" not in job
    assert "409" in doc["paths"]["/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's shape is not what is sent
    assert set(doc["components"]["schemas"]["Problem"]["properties"]) == {"status", "detail", "errors"}


def test_the_documented_422_is_the_body_sent(base):
    r = client(base, TOKEN).post("/jobs", json={"optim": {"epochs": "many"}})
    assert r.status_code == 422 and set(r.json()) == {"status", "detail", "errors"}


def test_docs_is_swagger_ui_served_from_the_package(base):
    anon = client(base)
    page = anon.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/assets/") or s.startswith("/") for s in sources), sources
    assert not re.search(r"https?://", " ".join(sources))  # nothing from a CDN
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        r = anon.get(asset)  # a browser fetches them without the token
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    assert anon.get("/docs/assets/../jobs").status_code in (401, 404)  # the prefix opens nothing else
    assert anon.get("/jobs").status_code == 401
