"""Service settings: environment variables over an optional YAML file, refusals that name the field."""

from __future__ import annotations

import json

import pytest

from service.auth import hash_token
from service.settings import ServiceSettings, load_settings

ENTRY = {"tenant": "vision", "sha256": hash_token("t0ken"), "name": "ci"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in [n for n in os.environ if n.startswith("ANCHOR_OPT_")]:
        monkeypatch.delenv(name)


def test_defaults_are_the_embedded_open_service_on_loopback():
    s = load_settings()
    assert s.store_uri == "./anchor-opt-store" and s.ray_address is None and s.open_mode
    assert s.host == "127.0.0.1" and s.max_running_jobs == 2 and s.allowed_schemes == ["s3", "file"]


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("ANCHOR_OPT_STORE_URI", "s3://jobs/prod")
    monkeypatch.setenv("ANCHOR_OPT_TOKENS", json.dumps([ENTRY]))
    monkeypatch.setenv("ANCHOR_OPT_HOST", "0.0.0.0")
    monkeypatch.setenv("ANCHOR_OPT_ALLOWED_DATASET_ROOTS", '["s3://datasets/voc", "/srv/data"]')
    monkeypatch.setenv("ANCHOR_OPT_MAX_RUNNING_JOBS", "5")
    monkeypatch.setenv("ANCHOR_OPT_S3_ENDPOINT_URL", "http://minio:9000")
    s = load_settings()
    assert s.store_uri == "s3://jobs/prod" and s.tokens[0].tenant == "vision" and not s.open_mode
    assert s.allowed_dataset_roots == ["s3://datasets/voc", "/srv/data"] and s.max_running_jobs == 5
    assert s.s3.endpoint_url == "http://minio:9000"


def test_a_settings_file_under_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "service.yaml"
    path.write_text(
        "store_uri: s3://from-file\nmax_running_jobs: 7\ntokens:\n"
        f"  - {{tenant: vision, sha256: {ENTRY['sha256']}}}\n"
        "s3: {endpoint_url: 'http://minio:9000', path_style: true}\n"
    )
    monkeypatch.setenv("ANCHOR_OPT_SETTINGS_FILE", str(path))
    monkeypatch.setenv("ANCHOR_OPT_MAX_RUNNING_JOBS", "3")  # the environment wins
    s = load_settings()
    assert s.store_uri == "s3://from-file" and s.max_running_jobs == 3 and s.tokens[0].tenant == "vision"
    assert s.s3.endpoint_url == "http://minio:9000" and s.s3.path_style


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"host": "0.0.0.0"}, "no API tokens"),  # open mode off loopback
        ({"max_running_jobs": 0}, "max_running_jobs"),
        ({"allowed_schemes": ["http"]}, "allowed_schemes"),
        ({"allowed_dataset_roots": ["relative/data"]}, "allowed_dataset_roots"),
        ({"allowed_dataset_roots": ["/srv/../etc"]}, "'..'"),
        ({"tokens": [{"tenant": "a", "sha256": "not-hex"}]}, "tokens.0.sha256"),
        ({"tokens": [ENTRY, ENTRY]}, "twice"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_name_the_field(overrides, needle):
    with pytest.raises(ValueError, match="invalid service settings") as err:
        load_settings(**overrides)
    assert needle in str(err.value)


def test_a_missing_settings_file_is_named(monkeypatch):
    monkeypatch.setenv("ANCHOR_OPT_SETTINGS_FILE", "/nonexistent/service.yaml")
    with pytest.raises(ValueError, match="/nonexistent/service.yaml"):
        ServiceSettings()


def test_tenant_limits_from_the_token_entry_else_the_defaults():
    a = {"tenant": "team-a", "sha256": "a" * 64, "max_running_jobs": 1, "max_gpus": 4}
    b = {"tenant": "team-b", "sha256": "b" * 64}
    settings = load_settings(tokens=[a, b], tenant_max_queued_jobs=7)
    assert settings.tenant_limit("team-a", "max_running_jobs") == 1
    assert settings.tenant_limit("team-a", "max_gpus") == 4
    assert settings.tenant_limit("team-b", "max_running_jobs") is None  # only the service's limit
    assert settings.tenant_limit("team-b", "max_queued_jobs") == 7
    second = {"tenant": "team-a", "sha256": "c" * 64, "max_gpus": 8}
    with pytest.raises(ValueError, match="tenant 'team-a' has two values of max_gpus"):
        load_settings(tokens=[a, second])
