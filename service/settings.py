"""The service's settings: `ANCHOR_OPT_*` environment variables, over an optional YAML file.

    ANCHOR_OPT_SETTINGS_FILE=/etc/anchor-opt/service.yaml   # optional; the environment wins over it
    ANCHOR_OPT_STORE_URI=s3://anchor-opt/jobs
    ANCHOR_OPT_TOKENS='[{"tenant": "vision", "sha256": "<64 hex>", "name": "ci"}]'

S3 endpoint and credentials are `trainer.storage.StorageSettings` (`ANCHOR_OPT_S3_*`, or an `s3:`
section of the file), shared with the trainer so both reach storage the same way. API tokens are
stored as SHA-256 hashes only (`anchor-opt token` makes one). Every field is in the README's
configuration reference.
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

from trainer.storage import StorageSettings

SETTINGS_FILE_ENV = "ANCHOR_OPT_SETTINGS_FILE"
SCHEMES = ("s3", "file")  # dataset URI schemes the service can ever allow ("file" covers plain paths)


class TokenEntry(BaseModel):
    """One API token: the tenant it acts for and the SHA-256 (hex) of the token itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # hashlib.sha256(token.encode()).hexdigest()
    name: str | None = None  # which client holds it, for people and logs


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
    max_running_jobs: int = Field(2, ge=1, le=1000)  # the rest wait QUEUED, started oldest first
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
    # The embedded Ray head: its temp folder (short: Ray puts sockets in it), CPUs and dashboard port.
    ray_temp_dir: str | None = None
    ray_num_cpus: int | None = Field(None, ge=1)
    ray_dashboard_port: int = Field(8265, ge=1, le=65535)
    # S3 endpoint, region, credentials, retries (ANCHOR_OPT_S3_* variables, or `s3:` in the file).
    s3: StorageSettings = Field(default_factory=StorageSettings)

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
        for root in value:
            if not (root.startswith("s3://") or root.startswith("file:///") or os.path.isabs(root)):
                raise ValueError(f"{root!r}: a dataset root is an absolute path, file:/// or s3:// URI")
            if ".." in re.split(r"[/\\]", root):
                raise ValueError(f"{root!r}: a dataset root must not contain '..'")
        return value

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
        return self

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
