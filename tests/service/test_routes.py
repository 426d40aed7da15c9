"""The API surface over real HTTP: auth and tenants, submission and idempotency, every bad input,
reading a job's documents, pictures and artifacts. The scheduler is not started here (no job runs;
test_jobs_e2e.py runs them on a real Ray)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from service.app import create_app
from service.auth import hash_token
from service.launcher import RayJobs
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import client, free_port, serving, small_config
from trainer.contract.documents import JobStatus
from trainer.contract.layout import JOB_KEY, SNAPSHOT_PREFIX
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import LocalStorage, StorageSettings, s3_client
from trainer.contract.store import JobStore
from trainer.train.local_run import train

PNG = b"\x89PNG\r\n\x1a\n"
TOKENS = {"team-a": "token-of-team-a", "team-b": "token-of-team-b"}
SPEC = {"name": "small", "optim": {"epochs": 1, "batch_size": 8}, "data": {"synthetic": {"num_train": 64}}}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    data_root = tmp_path_factory.mktemp("datasets")
    settings = ServiceSettings(
        store_uri=str(root),
        tokens=[TokenEntry(tenant=t, sha256=hash_token(k)) for t, k in TOKENS.items()],
        allowed_dataset_roots=[str(data_root)],
        max_body_bytes=64 * 1024,
    )
    with serving(create_app(settings, schedule=False)) as base:
        yield base, JobStore(LocalStorage(root)), data_root, settings


@pytest.fixture
def a(api):
    return client(api[0], TOKENS["team-a"])


@pytest.fixture
def b(api):
    return client(api[0], TOKENS["team-b"])


def _problem(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    for needle in needles:
        assert needle in body["detail"], body
    return body


def test_submit_returns_the_job_with_its_links(a):
    r = a.post("/jobs", json=SPEC)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "QUEUED" and job["name"] == "small"
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["links"]["anchors"] == f"/jobs/{job['id']}/anchors"
    full = a.get(job["links"]["self"]).json()
    assert full["spec"]["optim"]["epochs"] == 1 and full["submitted_by"] == "team-a"
    assert full["latest_anchors"] is None and full["artifacts"] == {}


def test_a_misspelt_key_gets_the_setting_meant_and_keeps_its_path(a):
    r = a.post("/jobs", json={"optim": {"epoch": 3}})
    problem = _problem(r, 422, "optim.epoch: no such setting; did you mean optim.epochs?")
    assert problem["errors"][0]["loc"] == ["body", "optim", "epoch"]
    r = a.post("/jobs", json={"anchors": {"num": 0}})
    _problem(r, 422, "anchors.num: Input should be greater than or equal to 1 (got 0)")


def test_a_warm_up_as_long_as_the_run_is_accepted_with_a_warning(a):
    """The README's old example: 2000 images / 32 x 4 epochs = 248 steps, with a 300-step warm-up."""
    body = {"tricks": {"warmup_steps": 300}, "optim": {"epochs": 4, "batch_size": 32}}
    r = a.post("/jobs", json=body)
    assert r.status_code == 201, r.text
    (warning,) = r.json()["warnings"]
    assert warning.startswith("tricks.warmup_steps=300 is not shorter than the run: the run has 248 steps")
    assert "try tricks.warmup_steps=99" in warning
    assert a.post("/jobs", json={**body, "tricks": {"warmup_steps": 100}}).json()["warnings"] == []


def test_tokens_are_required_and_tenants_see_only_their_jobs(api, a, b):
    base = api[0]
    _problem(client(base).get("/jobs"), 401, "missing")
    r = client(base, "not-a-token").get("/jobs")
    _problem(r, 401, "invalid")
    assert r.headers["www-authenticate"] == "Bearer"
    job = a.post("/jobs", json=SPEC).json()["id"]
    _problem(b.get(f"/jobs/{job}"), 404, job)  # another tenant's job looks missing
    _problem(b.post(f"/jobs/{job}/cancel"), 404)
    _problem(b.get(f"/jobs/{job}/anchors"), 404)
    assert job not in [j["id"] for j in b.get("/jobs").json()["items"]]
    assert job in [j["id"] for j in a.get("/jobs").json()["items"]]


def test_idempotency_key(a, b):
    first = a.post("/jobs", json=SPEC, headers={"Idempotency-Key": "nightly-42"})
    again = a.post("/jobs", json=SPEC, headers={"Idempotency-Key": "nightly-42"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = dict(SPEC, name="other")
    _problem(a.post("/jobs", json=other, headers={"Idempotency-Key": "nightly-42"}), 409, "different")
    theirs = b.post("/jobs", json=SPEC, headers={"Idempotency-Key": "nightly-42"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]  # keys are per tenant
    _problem(a.post("/jobs", json=SPEC, headers={"Idempotency-Key": "has space"}), 400, "Idempotency-Key")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"optim": {"epochs": 1, "colour": 3}}, 422, "optim.colour"),  # unknown field
        ({"optim": {"batch_size": "many"}}, 422, "optim.batch_size"),  # wrong type
        ({"optim": {"batch_size": -1}}, 422, "optim.batch_size"),  # negative count
        ({"optim": {"epochs": True}}, 422, "optim.epochs"),  # a boolean is no number (pydantic: 1)
        ({"optim": {"epochs": 2.5}}, 422, "optim.epochs"),  # a fraction is no count
        ({"anchors": {"num": 0}}, 422, "anchors.num"),
        ({"model": {"image_size": 100000}}, 422, "model.image_size"),  # absurd size
        ({"resources": {"workers": 10000}}, 422, "resources.workers"),
        ({"data": {"source": "http://example.com/voc.zip"}}, 422, "data.source"),
        ({"data": {"source": "ftp://host/x"}}, 422, "data.source"),
        ({"data": {"source": "/etc"}}, 422, "data.source"),  # outside the allowed roots
        ({"data": {"source": "file:///etc/passwd"}}, 422, "data.source"),
        ({"data": {"source": "relative/path"}}, 422, "data.source"),
        ([1, 2, 3], 422, "body"),
        ("not json at all", 422, "body"),
    ],
)
def test_bad_specs_are_4xx_naming_the_problem(a, body, status, needle):
    if isinstance(body, str):
        r = a.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    else:
        r = a.post("/jobs", json=body)
    problem = _problem(r, status, needle)
    assert problem["errors"] is None or all("loc" in e for e in problem["errors"])


def test_traversal_in_the_dataset_and_in_paths(api, a):
    data_root = api[2]
    _problem(a.post("/jobs", json={"data": {"source": f"{data_root}/../escape"}}), 422, "data.source", "..")
    for path in ("/jobs/..%2F..%2Fetc", "/jobs/../../etc/passwd", "/jobs/%00", "/jobs/Bad_ID/anchors"):
        assert a.get(path).status_code == 404, path


def test_oversized_bodies_are_413(a):
    big = dict(SPEC, name="x" * 50, data={"source": "synthetic", "pad": "y" * 100_000})
    _problem(a.post("/jobs", json=big), 413, "bytes")

    def chunks():  # streamed without a Content-Length
        yield b'{"name": "'
        for _ in range(100):
            yield b"z" * 1024
        yield b'"}'

    r = a.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    _problem(r, 413, "bytes")


def test_listing_is_newest_first_filtered_and_paged(api):
    base = api[0]
    c = client(base, TOKENS["team-b"])
    made = [c.post("/jobs", json=dict(SPEC, name=f"page-{i}")).json()["id"] for i in range(5)]
    c.post(f"/jobs/{made[0]}/cancel")
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = c.get("/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    mine = [j for j in seen if j in made]
    assert mine == made[::-1]  # newest first, each once
    cancelled = c.get("/jobs", params={"state": "CANCELLED"}).json()["items"]
    assert [j["id"] for j in cancelled if j["id"] in made] == [made[0]]
    _problem(c.get("/jobs", params={"cursor": "garbage"}), 400, "cursor")
    _problem(c.get("/jobs", params={"limit": 0}), 422, "limit")
    _problem(c.get("/jobs", params={"state": "DANCING"}), 422, "state")


def test_cancel_is_idempotent_and_refused_once_ended(api, a):
    job = a.post("/jobs", json=SPEC).json()["id"]
    first = a.post(f"/jobs/{job}/cancel")
    assert first.status_code == 200 and first.json()["state"] == "CANCELLED"
    assert a.post(f"/jobs/{job}/cancel").json()["state"] == "CANCELLED"
    assert a.get(f"/jobs/{job}").json()["error"] == "cancelled by request"


@pytest.fixture(scope="module")
def trained(api):
    """A job of team-a whose training ran (in this process) into its prefix of the store."""
    _, store, _, _ = api
    cfg = small_config("optim.epochs=2")
    record = store.create(JobSpec.model_validate(cfg.model_dump()), submitted_by="team-a")
    train(cfg, store.run_uri(record.id))
    return record.id


def test_a_trained_jobs_documents_pictures_and_artifacts(api, a, trained):
    job = a.get(f"/jobs/{trained}").json()
    assert job["state"] == "SUCCEEDED" and job["progress"]["step"] == job["progress"]["total_steps"] == 16
    assert job["latest_anchors"]["step"] == 16 and job["latest_metrics"]["epoch"] == 2
    assert set(job["artifacts"]) >= {"anchors_json", "anchors_yaml", "anchors_cfg", "weights", "anchors_plot"}
    snaps = a.get(f"/jobs/{trained}/anchors").json()["snapshots"]
    assert [s["step"] for s in snaps] == [0, 4, 8, 12, 16]
    later = a.get(f"/jobs/{trained}/anchors", params={"since_step": 8}).json()["snapshots"]
    assert [s["step"] for s in later] == [12, 16]
    assert a.get(f"/jobs/{trained}/anchors/latest").json()["step"] == 16
    plot = a.get(f"/jobs/{trained}/anchors/plot.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(PNG) and len(plot.content) > 10_000
    assert [m["epoch"] for m in a.get(f"/jobs/{trained}/metrics").json()["epochs"]] == [1, 2]
    result = a.get(f"/jobs/{trained}/result").json()
    assert result["result"]["steps"] == 16 and result["artifacts"]["weights"].endswith("/weights")
    yaml_text = a.get(f"/jobs/{trained}/artifacts/anchors_yaml").text
    assert "yolov5:" in yaml_text and "anchor_generator:" in yaml_text
    assert json.loads(a.get(f"/jobs/{trained}/artifacts/anchors_json").content)["stride"] == 16
    _problem(a.get(f"/jobs/{trained}/artifacts/nope"), 404, "nope", "anchors_yaml")
    weights = a.get(f"/jobs/{trained}/artifacts/weights")
    assert weights.headers["content-type"] == "application/octet-stream" and len(weights.content) > 100_000
    _problem(a.post(f"/jobs/{trained}/cancel"), 409, "SUCCEEDED")


def test_an_ended_jobs_view_is_rebuilt_when_its_status_changes(api, a):
    _, store, _, _ = api
    job = a.post("/jobs", json=SPEC).json()["id"]
    store.write_status(job, JobStatus(state=JobState.FAILED, error="first", updated_at=time.time()))
    assert a.get(f"/jobs/{job}").json()["error"] == "first"  # cached from here
    store.write_status(job, JobStatus(state=JobState.FAILED, error="second", updated_at=time.time() + 1))
    assert a.get(f"/jobs/{job}").json()["error"] == "second"


def test_a_cancelled_jobs_late_snapshots_are_served(api, a, trained):
    """Cancel is recorded before the Ray job stops, so its workers may still write: never cached."""
    _, store, _, _ = api
    job = a.post("/jobs", json=SPEC).json()["id"]
    a.post(f"/jobs/{job}/cancel")
    assert a.get(f"/jobs/{job}").json()["latest_anchors"] is None
    late = store.key(trained, SNAPSHOT_PREFIX)
    for o in store.storage.list(late):
        store.storage.write_bytes(
            store.key(job, o.key[len(store.key(trained)) :]), store.storage.read_bytes(o.key)
        )
    assert a.get(f"/jobs/{job}").json()["latest_anchors"]["step"] == 16


def test_an_unreadable_record_is_left_out_not_a_failure(api, a):
    _, store, _, _ = api
    mine = a.post("/jobs", json=SPEC).json()["id"]
    store.storage.write_bytes(store.key("broken-record", JOB_KEY), b"{not json")
    listed = a.get("/jobs", params={"limit": 500})
    assert listed.status_code == 200 and mine in [j["id"] for j in listed.json()["items"]]
    _problem(a.get("/jobs/broken-record"), 404, "broken-record")


def test_a_job_folder_is_listed_once_its_record_is_written(api, a):
    """Listings read the folders under jobs/: one without its job.json yet is skipped, not forgotten."""
    _, store, _, _ = api
    queued = JobStatus(state=JobState.QUEUED, updated_at=time.time())
    store.storage.write_bytes(store.key("late-record", "status.json"), queued.model_dump_json().encode())

    def listed() -> list[str]:
        return [j["id"] for j in a.get("/jobs", params={"limit": 500}).json()["items"]]

    assert "late-record" not in listed()
    store.create(JobSpec.from_mapping(SPEC), job_id="late-record", submitted_by="team-a")
    assert "late-record" in listed()


def test_a_queued_job_has_no_result_or_anchors_yet(a):
    job = a.post("/jobs", json=SPEC).json()["id"]
    _problem(a.get(f"/jobs/{job}/result"), 404, "no result")
    _problem(a.get(f"/jobs/{job}/anchors/latest"), 404, "no anchor")
    _problem(a.get(f"/jobs/{job}/anchors/plot.png"), 404)
    assert a.get(f"/jobs/{job}/logs").json()["lines"] == []


def test_health_readiness_and_metrics(api, a):
    base = api[0]
    anon = client(base)
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"] == {"storage": "ok", "ray": "unavailable"}
    a.get("/jobs")
    _problem(anon.get("/metrics"), 401, "missing bearer token")  # job counts span tenants: not public
    text = a.get("/metrics").text
    assert 'anchor_opt_http_requests_total{method="GET",route="/jobs",status="200"}' in text
    assert 'anchor_opt_jobs{state="QUEUED"}' in text and "anchor_opt_http_request_seconds_bucket" in text
    assert anon.get("/openapi.json").json()["paths"]["/jobs/{job_id}/anchors"]


def test_a_restarted_service_serves_every_job_as_before(api, a):
    base, store, _, settings = api
    before = a.get("/jobs", params={"limit": 500}).json()["items"]
    with serving(create_app(settings, schedule=False)) as again:
        after = client(again, TOKENS["team-a"]).get("/jobs", params={"limit": 500}).json()["items"]
    assert after == before and before


def _tokens() -> list[TokenEntry]:
    return [TokenEntry(tenant=t, sha256=hash_token(k)) for t, k in TOKENS.items()]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_parallel_submits_with_one_key_are_one_job_and_its_replays(backend, tmp_path, request):
    """Finding 8: 20 POSTs at once with one Idempotency-Key, three keys in a row: one job each,
    and every other answer its replay (a replay read status before the create had written it)."""
    if backend == "local":
        uri, s3 = str(tmp_path / "store"), StorageSettings()
    else:
        bucket, s3 = request.getfixturevalue("s3_bucket")
        uri = f"s3://{bucket}/store"
    settings = ServiceSettings(store_uri=uri, s3=s3, tokens=_tokens())
    with serving(create_app(settings, schedule=False)) as base:
        clients = [client(base, TOKENS["team-a"]) for _ in range(20)]
        for key in ("burst-1", "burst-2", "burst-3"):
            ready = threading.Barrier(len(clients))

            def post(c, key=key, ready=ready):
                ready.wait()  # all 20 requests leave together
                return c.post("/jobs", json=SPEC, headers={"Idempotency-Key": key})

            with ThreadPoolExecutor(len(clients)) as pool:
                answers = list(pool.map(post, clients))
            assert [r.status_code for r in answers] == [201] * 20, [
                r.text for r in answers if r.status_code != 201
            ]
            assert len({r.json()["id"] for r in answers}) == 1
            assert [r.headers.get("idempotent-replayed") for r in answers].count("true") == 19
            assert {r.json()["state"] for r in answers} == {"QUEUED"}


def test_a_store_that_does_not_answer_is_a_503_with_retry_after(s3_endpoint, tmp_path):
    """Finding 10: an outage is neither the request's fault nor a bug. A store whose endpoint
    refuses connections, then a real S3 endpoint (moto) that stops while the service runs."""
    from moto.server import ThreadedMotoServer

    closed = StorageSettings(endpoint_url=f"http://127.0.0.1:{free_port()}", path_style=True, max_attempts=1)
    settings = ServiceSettings(store_uri="s3://nowhere/store", s3=closed, tokens=_tokens())
    with serving(create_app(settings, schedule=False)) as base:
        c = client(base, TOKENS["team-a"])
        for r in (c.get("/jobs"), c.post("/jobs", json=SPEC), c.get("/jobs/k0123456789abcdef")):
            problem = _problem(r, 503, "job store is unavailable")
            assert r.headers["retry-after"] == "5" and "127.0.0.1" not in problem["detail"]

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    s3 = StorageSettings(endpoint_url=f"http://127.0.0.1:{port}", path_style=True, max_attempts=1)
    s3_client(s3).create_bucket(Bucket="outage")
    settings = ServiceSettings(store_uri="s3://outage/store", s3=s3, tokens=_tokens())
    with serving(create_app(settings, schedule=False)) as base:
        c = client(base, TOKENS["team-a"])
        job = c.post("/jobs", json=SPEC).json()["id"]
        assert c.get("/jobs").status_code == 200
        moto.stop()
        for r in (c.get("/jobs"), c.get(f"/jobs/{job}"), c.post(f"/jobs/{job}/cancel")):
            _problem(r, 503, "job store is unavailable")
            assert r.headers["retry-after"] == "5"


def test_a_ray_head_that_is_gone_is_a_503_with_retry_after(tmp_path):
    """Finding 10: the logs of a launched job come from Ray; with its head gone, that is a 503."""
    settings = ServiceSettings(store_uri=str(tmp_path / "store"), tokens=_tokens())
    gone = RayJobs(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    app = create_app(settings, launcher=gone, schedule=False)
    store = app.state.ctx.store
    with serving(app) as base:
        c = client(base, TOKENS["team-a"])
        job = c.post("/jobs", json=SPEC).json()["id"]
        now = time.time()
        store.write_status(job, JobStatus(state=JobState.QUEUED, launched_at=now, updated_at=now))
        r = c.get(f"/jobs/{job}/logs")
        _problem(r, 503, "Ray cluster is unavailable")
        assert r.headers["retry-after"] == "5"
        cancelled = c.post(f"/jobs/{job}/cancel")  # recorded now; the stop is retried at each tick
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"


class _ColouredLogs:
    """A launcher whose job log is what Ray's driver log holds: rich's and Ray's colour codes."""

    driver_address = None
    TEXT = "\x1b[36m(RayTrainWorker pid=81)\x1b[0m epoch 1/2 \x1b[1;31mloss\x1b[0m 3.2\n\x1b[2Kdone\n"

    def submit(self, *args, **kwargs) -> None: ...
    def stop(self, job_id: str) -> bool:
        return False

    def state(self, job_id: str):
        return None

    def logs(self, job_id: str, tail: int = 200) -> str:
        return self.TEXT

    def ping(self, timeout_s: float = 5.0) -> bool:
        return True


def test_logs_come_as_text_without_terminal_codes(tmp_path):
    settings = ServiceSettings(store_uri=str(tmp_path / "store"), tokens=_tokens())
    app = create_app(settings, launcher=_ColouredLogs(), schedule=False)
    with serving(app) as base:
        c = client(base, TOKENS["team-a"])
        job = c.post("/jobs", json=SPEC).json()["id"]
        now = time.time()
        app.state.ctx.store.write_status(
            job, JobStatus(state=JobState.RUNNING, launched_at=now, updated_at=now)
        )
        assert c.get(f"/jobs/{job}/logs").json()["lines"] == [
            "(RayTrainWorker pid=81) epoch 1/2 loss 3.2",
            "done",
        ]


def test_an_ended_job_can_be_deleted_with_everything_it_wrote(api, a, b):
    job = a.post("/jobs", json=SPEC).json()["id"]
    store = api[1]
    _problem(a.delete(f"/jobs/{job}"), 409, f"job {job} is QUEUED: cancel it first")
    _problem(b.delete(f"/jobs/{job}"), 404)  # another tenant's job does not exist for them
    assert a.post(f"/jobs/{job}/cancel").status_code == 200
    store.storage.write_bytes(store.key(job, "artifacts/anchors.png"), b"png")
    r = a.delete(f"/jobs/{job}")
    assert r.status_code == 204 and r.content == b""
    assert store.storage.list(store.key(job)) == [] and not store.exists(job)
    _problem(a.get(f"/jobs/{job}"), 404)
    assert job not in [j["id"] for j in a.get("/jobs", params={"limit": 500}).json()["items"]]
    _problem(a.delete(f"/jobs/{job}"), 404)


@pytest.fixture(scope="module")
def trained_on_levels(api):
    """A job of team-a with three levels, trained (in this process) into its prefix of the store."""
    _, store, _, _ = api
    cfg = small_config("optim.epochs=1", "model.levels=[8, 16, 32]", "output.snapshot_every=4")
    record = store.create(JobSpec.model_validate(cfg.model_dump()), submitted_by="team-a")
    train(cfg, store.run_uri(record.id))
    return record.id


def test_levels_are_accepted_checked_and_every_anchor_is_served_with_its_level(a, trained_on_levels):
    spec = SPEC | {"model": {"levels": [8, 16, 32], "image_size": 128}}
    created = a.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    full = a.get(created.json()["links"]["self"]).json()
    assert full["spec"]["model"]["levels"] == [8, 16, 32] and full["spec"]["anchors"]["num"] == 3  # 3 a level
    _problem(a.post("/jobs", json=SPEC | {"model": {"levels": [32, 16]}}), 422, "model.levels", "ascending")
    _problem(a.post("/jobs", json=SPEC | {"model": {"levels": [12]}}), 422, "model.levels")
    snaps = a.get(f"/jobs/{trained_on_levels}/anchors").json()["snapshots"]
    for snap in snaps:
        assert snap["strides"] == [8, 16, 32] and snap["levels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert snap["stride"] is None  # one int would be misread with several levels
        assert len(snap["anchors"]) == len(snap["anchors_cells"]) == 9
        for px, cells, level in zip(snap["anchors"], snap["anchors_cells"], snap["levels"], strict=True):
            assert cells == pytest.approx([v / [8, 16, 32][level] for v in px], abs=2e-3)
    result = a.get(f"/jobs/{trained_on_levels}/result").json()["result"]
    assert result["strides"] == [8, 16, 32] and result["levels"] == snaps[-1]["levels"]
    assert result["stride"] is None
    plot = a.get(f"/jobs/{trained_on_levels}/anchors/plot.png")
    assert plot.status_code == 200 and plot.content.startswith(PNG)
    exported = json.loads(a.get(f"/jobs/{trained_on_levels}/artifacts/anchors_json").content)
    assert exported["strides"] == [8, 16, 32] and exported["levels"] == result["levels"]
    assert exported["anchors"] == result["anchors"]["final"] and "anchor_generator" in exported
    exported_yaml = yaml.safe_load(a.get(f"/jobs/{trained_on_levels}/artifacts/anchors_yaml").text)
    yolov5 = exported_yaml["yolov5"]["anchors"]
    assert [len(row) for row in yolov5] == [6, 6, 6]  # three levels of three (w, h) pairs, P3/8 first
    assert "mask = 6,7,8" in a.get(f"/jobs/{trained_on_levels}/artifacts/anchors_cfg").text
