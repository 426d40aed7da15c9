"""The service's settings: `ANCHOR_OPT_*` environment variables, over an optional YAML file.

    ANCHOR_OPT_SETTINGS_FILE=/etc/anchor-opt/service.yaml   # optional; the environment wins over it
    ANCHOR_OPT_STORE_URI=s3://anchor-opt/jobs
    ANCHOR_OPT_TOKENS='[{"tenant": "vision", "sha256": "<64 hex>", "name": "ci"}]'

S3 endpoint and credentials are `trainer.contract.storage.StorageSettings` (`ANCHOR_OPT_S3_*`, or an `s3:`
section of the file), shared with the trainer so both reach storage the same way. API tokens are
stored as SHA-256 hashes only (`anchor-opt token` makes one). Every field is in docs/configuration.md,
the settings reference.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from trainer.contract.storage import StorageSettings

SETTINGS_FILE_ENV = "ANCHOR_OPT_SETTINGS_FILE"
TENANT_LIMITS = ("max_running_jobs", "max_queued_jobs", "max_gpus")  # per tenant: TokenEntry, else tenant_*
SCHEMES = ("s3", "file")  # dataset URI schemes the service can ever allow ("file" covers plain paths)


class TokenEntry(BaseModel):
    """One API token: the tenant it acts for and the SHA-256 (hex) of the token itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # hashlib.sha256(token.encode()).hexdigest()
    name: str | None = Field(None, max_length=100)  # which client holds it, for people and logs
    # The folders and s3:// prefixes this token's jobs may read datasets from, instead of the
    # service's allowed_dataset_roots (None: those). [] admits only the synthetic set.
    dataset_roots: list[str] | None = Field(None, max_length=100)
    # This tenant's limits, instead of the service's tenant_* defaults (None: those). A tenant with
    # several tokens has one set of limits: entries that give a limit must agree on it.
    max_running_jobs: int | None = Field(None, ge=1, le=1000)  # its jobs on Ray at once
    max_queued_jobs: int | None = Field(None, ge=0, le=100_000)  # its jobs waiting; a submit beyond: 429
    max_gpus: float | None = Field(None, ge=0, le=100_000)  # GPUs of its running jobs together

    @field_validator("dataset_roots")
    @classmethod
    def _roots(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _absolute_roots(value)


class JobLimits(BaseModel):
    """What one job may ask of this service, checked at submit (service.capacity) and refused with a
    422 naming the field. The spec's own caps (trainer.config) are what no run needs; these are what
    this deployment can afford, for an operator to raise.

    The embedded Ray head is also held to the machine it runs on (its CPUs, GPUs and memory); a named
    cluster may autoscale, so there the per-worker limits below stand for its largest worker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_image_size: int = Field(1024, ge=32, le=2048)  # model.image_size
    # data.synthetic.num_train + num_val: rendered by every worker before it trains (16 ms an image at
    # 256 px, 83 ms at 512 px on one core) and kept in its memory.
    max_synthetic_images: int = Field(20_000, ge=2, le=200_000)
    max_epochs: int = Field(1000, ge=1, le=10_000)  # optim.epochs
    max_batch_size: int = Field(256, ge=1, le=1024)  # optim.batch_size (per worker)
    max_workers: int = Field(16, ge=1, le=256)  # resources.workers
    max_cpus_per_worker: float = Field(32, ge=1, le=256)  # resources.cpus_per_worker
    max_gpus_per_worker: float = Field(8, ge=0, le=16)  # resources.gpus_per_worker
    max_gpus_per_job: float = Field(16, ge=0, le=4096)  # resources.workers x gpus_per_worker
    # On a named cluster: the memory one Ray Train worker may use (a worker pod's memory over the
    # workers it holds: the chart's pods have 32 GiB). The embedded head uses the machine's instead.
    worker_memory_gb: float = Field(32, gt=0, le=65536)
    # The embedded head's GPUs and memory for jobs. None: what Ray would detect (CUDA_VISIBLE_DEVICES,
    # else the NVIDIA devices present) and the machine's memory (its cgroup limit, if lower).
    embedded_gpus: int | None = Field(None, ge=0, le=1024)
    embedded_memory_gb: float | None = Field(None, gt=0, le=65536)
    # How long a started job may wait for Ray to place its workers, then it is FAILED (passed to the
    # driver as ANCHOR_OPT_RESOURCE_WAIT_S).
    resource_wait_s: float = Field(1800.0, gt=0, le=7 * 86400)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANCHOR_OPT_", frozen=True, extra="forbid")

    # Where job records, status, snapshots and results live: a folder or s3://bucket/prefix.
    store_uri: str = "./anchor-opt-store"
    # The Ray job server (http://head:8265). None: the service starts a local Ray head (embedded default).
    ray_address: str | None = None
    # API tokens (hashes). None configured: open mode, allowed only on a loopback host.
    tokens: list[TokenEntry] = Field(default_factory=list)
    # Dataset URI schemes jobs may use: s3, file (local paths and file:// URIs).
    allowed_schemes: list[str] = Field(default_factory=lambda: list(SCHEMES))
    # Folders and s3://bucket/prefix roots datasets must lie under; none: only the synthetic set.
    allowed_dataset_roots: list[str] = Field(default_factory=list)
    # Jobs on Ray at once, all tenants together; the rest wait QUEUED, and start with tenants taken in
    # turn (service.fairness), oldest first within a tenant.
    max_running_jobs: int = Field(2, ge=1, le=1000)
    # Each tenant's limits unless its token entry gives its own: jobs running at once (None: only
    # max_running_jobs), jobs waiting (a submit beyond is a 429), GPUs its running jobs hold together.
    tenant_max_running_jobs: int | None = Field(None, ge=1, le=1000)
    tenant_max_queued_jobs: int = Field(100, ge=0, le=100_000)
    # Ended jobs (SUCCEEDED, FAILED, CANCELLED) are deleted, every object of theirs, this many days
    # after they ended; None keeps them until DELETE /jobs/{id}.
    job_retention_days: float | None = Field(None, gt=0, le=36_500)
    tenant_max_gpus: float | None = Field(None, ge=0, le=100_000)
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)  # larger request bodies are a 413
    host: str = "127.0.0.1"  # `anchor-opt serve` binds here
    port: int = Field(8000, ge=1, le=65535)
    log_tail_lines: int = Field(200, ge=1, le=10_000)  # GET /jobs/{id}/logs without ?tail=
    scheduler_interval_s: float = Field(2.0, gt=0, le=300)  # how often Ray's view is reconciled
    # Memory for cached job documents, least recently read dropped first: full job records (the spec
    # may hold long strings), and the views of ended jobs. Listings use a compact index of every job
    # (a few hundred bytes each) that is not counted here.
    record_cache_bytes: int = Field(16 << 20, ge=0, le=16 << 30)
    view_cache_bytes: int = Field(32 << 20, ge=0, le=16 << 30)
    # The embedded Ray head: its temp folder (short: Ray puts sockets in it; yours alone: its token is
    # kept there), CPUs and dashboard port (any: its workers take ports the system picks).
    ray_temp_dir: str | None = None
    ray_num_cpus: int | None = Field(None, ge=1)
    ray_dashboard_port: int = Field(8265, ge=1, le=65535)
    # S3 endpoint, region, credentials, retries (ANCHOR_OPT_S3_* variables, or `s3:` in the file).
    s3: StorageSettings = Field(default_factory=StorageSettings)
    # GET /metrics without a token. Off by default: its job counts span every tenant (with tokens
    # configured, any tenant's token reads it; give Prometheus one, as `authorization` of its scrape).
    metrics_public: bool = False
    # How long /metrics reuses its job counts (each count reads every job's status); 0: every scrape.
    metrics_cache_s: float = Field(5.0, ge=0, le=3600)
    # What one job may ask for (JobLimits; JSON in ANCHOR_OPT_LIMITS, or a `limits:` section of the file).
    limits: JobLimits = Field(default_factory=JobLimits)

    @field_validator("allowed_schemes")
    @classmethod
    def _known_schemes(cls, value: list[str]) -> list[str]:
        value = [s.lower() for s in value]
        if unknown := sorted(set(value) - set(SCHEMES)):
            raise ValueError(f"unknown scheme(s) {unknown}: the service reads datasets from {list(SCHEMES)}")
        return value

    @field_validator("allowed_dataset_roots")
    @classmethod
    def _absolute_roots(cls, value: list[str]) -> list[str]:
        return _absolute_roots(value)

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> ServiceSettings:
        if not self.tokens and not _loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines, but no API tokens are configured: "
                "set tokens (ANCHOR_OPT_TOKENS, see `anchor-opt token`) or serve on 127.0.0.1"
            )
        tenants = [t.sha256 for t in self.tokens]
        if len(set(tenants)) != len(tenants):
            raise ValueError("tokens: the same token hash is listed twice")
        for field in TENANT_LIMITS:
            given: dict[str, object] = {}
            for entry in self.tokens:
                value = getattr(entry, field)
                if value is not None and given.setdefault(entry.tenant, value) != value:
                    raise ValueError(f"tokens: tenant {entry.tenant!r} has two values of {field}")
        return self

    def tenant_limit(self, tenant: str, field: str):
        """The tenant's `field` (one of TENANT_LIMITS): from its token entries, else the tenant_* default."""
        for entry in self.tokens:
            if entry.tenant == tenant and getattr(entry, field) is not None:
                return getattr(entry, field)
        return getattr(self, f"tenant_{field}")

    @property
    def open_mode(self) -> bool:
        """No tokens: every request acts for the tenant 'default' (loopback only)."""
        return not self.tokens

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        if path := os.environ.get(SETTINGS_FILE_ENV):
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=_existing(path)))
        return tuple(sources)


def _absolute_roots(roots: list[str]) -> list[str]:
    for root in roots:
        if not (root.startswith("s3://") or root.startswith("file:///") or os.path.isabs(root)):
            raise ValueError(f"{root!r}: a dataset root is an absolute path, file:/// or s3:// URI")
        if ".." in re.split(r"[/\\]", root):
            raise ValueError(f"{root!r}: a dataset root must not contain '..'")
    return roots


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{SETTINGS_FILE_ENV}={path}: no such file")
    return p


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: Any) -> ServiceSettings:
    """Settings from the environment (and ANCHOR_OPT_SETTINGS_FILE), `overrides` first; ValueError
    naming the bad field or file."""
    from pydantic import ValidationError

    try:
        return ServiceSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"invalid service settings: {problems}") from None
