"""Schemathesis against the app's own OpenAPI schema, over real HTTP: no request is a server error.

Every operation of the schema the running service serves at /openapi.json gets schemathesis'
coverage cases (boundary and wrong-type values, missing and unexpected parameters, unexpected
methods; at most COVERAGE_CAP of them) and then EXAMPLES Hypothesis examples, valid and invalid,
all with one tenant's bearer token: about 500 requests. Every response must be below 500 (/readyz's
documented 503 aside: no Ray runs here) and every 4xx a `Problem` body (status, detail). Path
parameters are drawn often from jobs that exist: one that trained in this process (snapshots,
metrics, result, artifacts), one queued job submitted over the API, and another tenant's job
(which must look missing). Bounded by case counts, not by time; derandomized, so CI replays the
same cases.

JSON's non-standard Infinity and NaN, which Python's parser (and so FastAPI's) accepts, are beyond
what schemathesis generates: those cases are written out below.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from service.app import create_app
from service.auth import hash_token
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import client, serving, small_config
from trainer.contract.spec import JobSpec
from trainer.contract.storage import LocalStorage
from trainer.contract.store import JobStore
from trainer.train.local_run import train

TOKENS = {"fuzz-a": "token-of-fuzz-a", "fuzz-b": "token-of-fuzz-b"}
AUTH = {"Authorization": f"Bearer {TOKENS['fuzz-a']}"}
EXAMPLES = 20  # Hypothesis examples per operation, after its coverage cases
COVERAGE_CAP = 150  # coverage cases per operation at most, evenly spread (POST /jobs has ~800)
ARTIFACTS = ["anchors_json", "anchors_yaml", "anchors_cfg", "weights", "anchors_plot", "dataset", "boxes"]
DOCUMENTED_5XX = {("GET", "/readyz", 503)}  # storage or Ray unreachable: no Ray runs here
RELAXED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=RELAXED
)


@dataclass
class Service:
    base: str
    job_ids: list[str]  # trained and queued (team fuzz-a), then another tenant's


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The service with three jobs in its store, over HTTP; the scheduler is off, so nothing runs."""
    root = tmp_path_factory.mktemp("store")
    settings_ = ServiceSettings(
        store_uri=str(root),
        tokens=[TokenEntry(tenant=t, sha256=hash_token(k)) for t, k in TOKENS.items()],
        allowed_dataset_roots=[str(tmp_path_factory.mktemp("datasets"))],
    )
    store = JobStore(LocalStorage(root))
    cfg = small_config("optim.epochs=1")  # test_routes' `trained` job, one epoch (8 steps) instead of two
    trained = store.create(JobSpec.model_validate(cfg.model_dump()), submitted_by="fuzz-a").id
    train(cfg, store.run_uri(trained))
    with serving(create_app(settings_, schedule=False)) as base:
        queued = client(base, TOKENS["fuzz-a"]).post("/jobs", json={"name": "queued"}).json()["id"]
        theirs = client(base, TOKENS["fuzz-b"]).post("/jobs", json={"name": "theirs"}).json()["id"]
        yield Service(base, [trained, queued, theirs])


@pytest.fixture(scope="module")
def api_schema(service):
    """The served schema; half the job ids and artifact names it generates are ones that exist."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": service.base,
            "dictionaries": {"jobs": {"values": service.job_ids}, "artifacts": {"values": ARTIFACTS}},
            "parameters": {
                "path.job_id": {"dictionary": "jobs", "probability": 0.5},
                "path.name": {"dictionary": "artifacts", "probability": 0.5},
            },
        }
    )
    return schemathesis.openapi.from_url(f"{service.base}/openapi.json", config=config)


def no_server_error(ctx, response, case) -> None:
    documented = (case.method.upper(), case.path, response.status_code) in DOCUMENTED_5XX
    if response.status_code >= 500 and not documented:
        raise AssertionError(f"server error {response.status_code}: {response.text[:1000]}")


def problem_body(ctx, response, case) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert body["status"] == response.status_code and body["detail"], body


def test_no_request_is_a_server_error(api_schema):
    sent: Counter[str] = Counter()
    failures: list[str] = []
    with requests.Session() as http:

        def check(case) -> None:
            sent[case.operation.label] += 1
            response = case.call(session=http, headers=AUTH)
            case.validate_response(response, checks=[no_server_error, problem_body])

        for result in api_schema.get_all_operations():
            operation = result.ok()
            coverage = list(
                api_schema.iter_coverage_cases(
                    operation,
                    generation_modes=list(GenerationMode),
                    generation_config=api_schema.config.generation_for(operation=operation),
                )
            )
            examples = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))
            try:
                for case in coverage[:: math.ceil(len(coverage) / COVERAGE_CAP)]:
                    check(case)
                FUZZ(given(examples)(check))()
            except Exception as exc:  # every operation runs; each failure shows its request as curl
                failures.append(f"{operation.label}: {exc}")
    print(f"\n{sum(sent.values())} requests: {dict(sent)}")
    assert not failures, "\n\n".join(failures)
    assert len(sent) == len(api_schema) and sum(sent.values()) >= 300  # every operation, a few hundred cases


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"optim": {"lr": Infinity}}', "optim.lr"),
        ('{"optim": {"grad_clip": 1e999}}', "optim.grad_clip"),  # overflows to inf
        ('{"anchors": {"init": "list", "num": 1, "values": [[NaN, 4]]}}', "anchors.values.0.0"),
        ('{"data": {"synthetic": {"shapes": [{"w": Infinity, "h": 8}]}}}', "data.synthetic.shapes.0.w"),
        ('{"optim": {"lr": NaN}}', "optim.lr"),  # refused by its bound (lr > 0) already
    ],
)
def test_non_finite_numbers_are_422_naming_the_field(service, body, field):
    """They used to be accepted and stored as null: the job could never be read back, so resending
    the same Idempotency-Key (or listing after a restart) was a 500."""
    c = client(service.base, TOKENS["fuzz-a"])
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"finite-{field}"}
    for _ in range(2):
        r = c.post("/jobs", content=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(f"{field}: "), r.json()
