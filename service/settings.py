"""The service's settings: `ANCHOR_OPT_*` environment variables, over an optional YAML file.

    ANCHOR_OPT_SETTINGS_FILE=/etc/anchor-opt/service.yaml   # optional; the environment wins over it
    ANCHOR_OPT_STORE_URI=s3://anchor-opt/jobs
    ANCHOR_OPT_TOKENS='[{"tenant": "vision", "sha256": "<64 hex>", "name": "ci"}]'

S3 endpoint and credentials are `trainer.contract.storage.StorageSettings` (`ANCHOR_OPT_S3_*`, or an `s3:`
section of the file), shared with the trainer so both reach storage the same way. API tokens are
stored as SHA-256 hashes only (`anchor-opt token` makes one). Every field is in docs/service-settings.md,
generated from the descriptions here (service.settings_reference).

Longer than 300 lines because every setting is here with its description and bounds: the one place
the reference is generated from.
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

    tenant: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="The tenant the token acts for: it sees and acts on that tenant's jobs only.",
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the token (`anchor-opt token` prints it); the token is never stored.",
    )
    name: str | None = Field(None, max_length=100, description="Which client holds it, for people and logs.")
    dataset_roots: list[str] | None = Field(
        None,
        max_length=100,
        description="Folders and s3:// prefixes this token's jobs may read datasets from, instead of "
        "ALLOWED_DATASET_ROOTS (null: those); [] admits only the synthetic set.",
    )
    # A tenant with several tokens has one set of limits: entries that give a limit must agree on it.
    max_running_jobs: int | None = Field(
        None, ge=1, le=1000, description="The tenant's jobs on Ray at once (null: TENANT_MAX_RUNNING_JOBS)."
    )
    max_queued_jobs: int | None = Field(
        None,
        ge=0,
        le=100_000,
        description="The tenant's jobs waiting; a submit beyond is a 429 (null: TENANT_MAX_QUEUED_JOBS).",
    )
    max_gpus: float | None = Field(
        None,
        ge=0,
        le=100_000,
        description="GPUs the tenant's running jobs hold together; a job asking more is a 422 "
        "(null: TENANT_MAX_GPUS).",
    )

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

    max_image_size: int = Field(1024, ge=32, le=2048, description="Largest `model.image_size`.")
    # Rendered by every worker before it trains (16 ms an image at 256 px, 83 ms at 512 px on one
    # core) and kept in its memory.
    max_synthetic_images: int = Field(
        20_000, ge=2, le=200_000, description="Largest `data.synthetic.num_train` + `num_val`."
    )
    max_epochs: int = Field(1000, ge=1, le=10_000, description="Largest `optim.epochs`.")
    max_batch_size: int = Field(256, ge=1, le=1024, description="Largest `optim.batch_size` (per worker).")
    max_workers: int = Field(16, ge=1, le=256, description="Largest `resources.workers`.")
    max_cpus_per_worker: float = Field(32, ge=1, le=256, description="Largest `resources.cpus_per_worker`.")
    max_gpus_per_worker: float = Field(8, ge=0, le=16, description="Largest `resources.gpus_per_worker`.")
    max_gpus_per_job: float = Field(
        16, ge=0, le=4096, description="Largest `resources.workers` x `gpus_per_worker`."
    )
    # The chart's worker pods have 32 GiB.
    worker_memory_gb: float = Field(
        32,
        gt=0,
        le=65536,
        description="On a named cluster: the memory one Ray Train worker may use (a worker pod's memory "
        "over the workers it holds). The embedded head uses the machine's instead.",
    )
    embedded_gpus: int | None = Field(
        None,
        ge=0,
        le=1024,
        description="The embedded head's GPUs for jobs; null: what Ray would detect "
        "(CUDA_VISIBLE_DEVICES, else the NVIDIA devices present).",
    )
    embedded_memory_gb: float | None = Field(
        None,
        gt=0,
        le=65536,
        description="The embedded head's memory for jobs; null: the machine's (its cgroup limit, if lower).",
    )
    resource_wait_s: float = Field(
        1800.0,
        gt=0,
        le=7 * 86400,
        description="Seconds a started job may wait for Ray to place its workers before it is FAILED "
        "(raise it where a GPU node takes longer to join).",
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANCHOR_OPT_", frozen=True, extra="forbid")

    store_uri: str = Field(
        "./anchor-opt-store",
        description="The job store (records, status, snapshots, results): a folder, `file:///abs/path` "
        "or `s3://bucket/prefix`.",
    )
    ray_address: str | None = Field(
        None,
        description="The Ray job server, `http://<head>:8265`; null: the service starts a local Ray head "
        "(the embedded default).",
    )
    tokens: list[TokenEntry] = Field(
        default_factory=list,
        description="API tokens as hashes, JSON in the environment (the token entry keys below; "
        "`anchor-opt token` makes one). Empty: open mode, allowed only on loopback: the service checks the "
        "sockets it listens on and refuses to start on any other address.",
    )
    allowed_schemes: list[str] = Field(
        default_factory=lambda: list(SCHEMES),
        description="Dataset URI schemes jobs may use: `s3`, `file` (plain absolute paths included).",
    )
    allowed_dataset_roots: list[str] = Field(
        default_factory=list,
        description="Folders and `s3://bucket/prefix` roots datasets must lie under; none: only the "
        "synthetic set.",
    )
    max_running_jobs: int = Field(
        2,
        ge=1,
        le=1000,
        description="Jobs on Ray at once, all tenants together; the rest wait QUEUED and start with "
        "tenants taken in turn, oldest first within a tenant.",
    )
    tenant_max_running_jobs: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Each tenant's jobs on Ray at once, unless its token entry says (null: only "
        "MAX_RUNNING_JOBS bounds them).",
    )
    tenant_max_queued_jobs: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Each tenant's jobs waiting, unless its token entry says; a submit beyond is a 429.",
    )
    job_retention_days: float | None = Field(
        None,
        gt=0,
        le=36_500,
        description="Ended jobs (SUCCEEDED, FAILED, CANCELLED) are deleted, every object of theirs, this "
        "many days after they ended; null: kept until DELETE /jobs/{id}.",
    )
    tenant_max_gpus: float | None = Field(
        None,
        ge=0,
        le=100_000,
        description="GPUs each tenant's running jobs may hold together, unless its token entry says; a job "
        "asking more is a 422 (null: no limit).",
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20, description="Larger request bodies are a 413.")
    host: str = Field(
        "127.0.0.1", description="Where `anchor-opt serve` listens (any other than loopback needs tokens)."
    )
    port: int = Field(8000, ge=1, le=65535, description="The port `anchor-opt serve` listens on.")
    log_tail_lines: int = Field(
        200, ge=1, le=10_000, description="Lines GET /jobs/{id}/logs returns without `?tail=`."
    )
    scheduler_interval_s: float = Field(
        2.0, gt=0, le=300, description="How often queued jobs are started and Ray's view reconciled."
    )
    # Listings use a compact index of every job (a few hundred bytes each), not counted here.
    record_cache_bytes: int = Field(
        16 << 20,
        ge=0,
        le=16 << 30,
        description="Bytes of memory for cached job records (the spec may hold long strings), least "
        "recently read dropped first (16 MiB).",
    )
    view_cache_bytes: int = Field(
        32 << 20,
        ge=0,
        le=16 << 30,
        description="Bytes of memory for the cached views of ended jobs, least recently read dropped first "
        "(32 MiB).",
    )
    ray_temp_dir: str | None = Field(
        None,
        description="The embedded head's temp folder; null: `$RAY_TMPDIR/anchor-opt-ray-<uid>` or "
        "`/tmp/anchor-opt-ray-<uid>`, never Ray's shared `/tmp/ray`. Keep it short (Ray puts sockets "
        "in it); its `anchor-opt/` folder, which holds the head's token, must be the service user's alone.",
    )
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs the embedded head offers; null: all.")
    ray_dashboard_port: int = Field(
        8265,
        ge=1,
        le=65535,
        description="The embedded head's job server port (the head this service started there is "
        "reused; another process on it is an error).",
    )
    s3: StorageSettings = Field(
        default_factory=StorageSettings,
        description="S3 endpoint, region, credentials and retries: the `ANCHOR_OPT_S3_*` variables, or "
        "an `s3:` section of the settings file.",
    )
    # Off by default: its job counts span every tenant.
    metrics_public: bool = Field(
        False,
        description="GET /metrics without a token; false: it needs one (any tenant's; Prometheus sends it "
        "as its scrape's `authorization`).",
    )
    metrics_cache_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="How long /metrics reuses its job counts (each count reads every job's status); "
        "0: count at every scrape.",
    )
    limits: JobLimits = Field(
        default_factory=JobLimits,
        description="What one job may ask for: JSON in `ANCHOR_OPT_LIMITS`, or a `limits:` section of the "
        "settings file; a job beyond is a 422 naming the field.",
    )

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
