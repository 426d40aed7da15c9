"""What every backend shares: the errors, StorageSettings, ObjectInfo, key checking and the Storage ABC."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TMP_PREFIX = ".anchor-opt-tmp-"  # in-flight writes; never listed, never a valid key's last part


class StorageError(Exception):
    """A storage operation failed. The message names the URI of the object (or of the storage)."""

    def __init__(self, message: str, uri: str = ""):
        super().__init__(message)
        self.uri = uri

    def __str__(self) -> str:  # KeyError, a base of NotFound, would print the message quoted
        return str(self.args[0])


class NotFound(StorageError, KeyError):
    """No object under the key. Also a KeyError: a storage maps keys to bytes."""


class PreconditionFailed(StorageError):
    """A conditional write was refused: the object is no longer the version it was read as (`if_match`),
    or is already there (`if_absent`, as AlreadyExists). Nothing was written; read again and retry."""


class AlreadyExists(PreconditionFailed):
    """A conditional create (`if_absent=True`) found an object there; that object was left as it was."""


class InvalidKey(StorageError, ValueError):
    """A key that is not a relative path under the root ("", "/abs", "a/../b", "a//b")."""


class StorageSettings(BaseSettings):
    """How to reach S3 and where to cache; read once from ANCHOR_OPT_S3_* and ANCHOR_OPT_CACHE_DIR."""

    model_config = SettingsConfigDict(env_prefix="ANCHOR_OPT_S3_", frozen=True, populate_by_name=True)

    endpoint_url: str | None = Field(
        None, description='S3 API endpoint for MinIO, Ceph, moto ("http://minio:9000"); null: AWS itself.'
    )
    region: str = Field("us-east-1", description="Region requests are signed for; MinIO and moto accept any.")
    access_key_id: str | None = Field(
        None,
        description="Static access key id; with the secret key, or neither: boto3's default chain "
        "(AWS_* variables, ~/.aws, an IAM role).",
    )
    # SecretStr keeps it out of logs and reprs.
    secret_access_key: SecretStr | None = Field(None, description="Static secret key, with the key id.")
    path_style: bool = Field(
        False,
        description="Path-style addressing (http://host/bucket/key): MinIO with a hostname endpoint and "
        "most self-hosted endpoints need it.",
    )
    # botocore's "standard" mode retries throttling, 5xx and connection errors with jittered
    # exponential backoff.
    max_attempts: int = Field(5, ge=1, description="Attempts per request, the first included.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for bytes on an open connection.")
    # A dataset is many small images: downloading is latency-bound.
    download_workers: int = Field(8, ge=1, description="Objects downloaded at once into the cache.")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "anchor-opt",
        validation_alias="ANCHOR_OPT_CACHE_DIR",
        description="The local mirror of s3:// datasets and weights: <cache_dir>/s3/<bucket>/<key>.",
    )

    @model_validator(mode="after")
    def _both_keys_or_neither(self) -> StorageSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither (default chain)")
        return self

    @classmethod
    def from_env(cls) -> StorageSettings:
        """Settings from the environment alone (the same as `StorageSettings()`)."""
        return cls()


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the storage root
    size: int  # bytes
    # S3: the object's ETag, unquoted. Local: f"{inode:x}-{mtime_ns:x}-{size:x}" from stat, not a
    # content hash (listing never reads the data); every write is a new file, so a rewrite changes
    # it. The two kinds are never compared.
    etag: str


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the version they are (`Storage.read_versioned`), for `write_bytes(if_match=)`.

    S3: the object's ETag, unquoted (the MD5 of a single-part object's bytes). Local: the SHA-256 of
    the bytes. Both name the content, not the write, so a version that comes back (the same bytes
    written again) matches again; a compare-and-swap over content is all a status transition needs.
    """

    data: bytes
    version: str


def check_key(key: str, where: str, *, prefix: bool = False) -> str:
    """`key` when it is a relative `/` path that stays under the root, else InvalidKey.

    With `prefix`, "" and a trailing "/" are allowed too (list("jobs/"), list("jobs/ab")).
    """
    parts = key.split("/")
    if prefix and parts[-1] == "":
        parts = parts[:-1]
    bad = key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in parts)
    if (bad or not key or parts[-1].startswith(TMP_PREFIX)) and not (prefix and key == ""):
        raise InvalidKey(
            f"{where}: invalid key {key!r} (want a relative path such as 'jobs/abc/job.json')", where
        )
    return key


def check_folder(prefix: str, where: str) -> str:
    """`prefix` when it names a folder: "" (the root) or a valid prefix ending in "/"; else InvalidKey."""
    check_key(prefix, where, prefix=True)
    if prefix and not prefix.endswith("/"):
        raise InvalidKey(f"{where}: invalid folder {prefix!r} (want '' or a path ending in '/')", where)
    return prefix


class Storage(ABC):
    """A bucket/prefix or a folder, holding whole objects addressed by keys relative to its root."""

    uri: str  # the root: "s3://bucket/prefix" or "file:///abs/folder"

    def uri_for(self, key: str) -> str:
        """The full URI of `key`, for messages."""
        return f"{self.uri.rstrip('/')}/{key}"

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; NotFound if absent."""

    @abstractmethod
    def read_versioned(self, key: str) -> Versioned:
        """The object's bytes with their version, for a conditional rewrite; NotFound if absent."""

    @abstractmethod
    def write_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> None:
        """Replaces the object whole. With `if_absent`, creates it only if absent, else AlreadyExists.

        With `if_match` (a `Versioned.version` of this key), replaces it only if it is still that
        version, atomically (S3 If-Match; a compare-and-swap under a lock on a folder), else
        PreconditionFailed, also when it was deleted meanwhile.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and etag of one object; NotFound if absent."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a string prefix, as in S3), sorted by key."""

    @abstractmethod
    def folders(self, prefix: str = "") -> list[str]:
        """The names of the folders directly under the folder `prefix` ("" or ending in "/"), sorted.

        For "jobs/", the `<id>` of every `jobs/<id>/...` key, without listing the keys below them (one
        request per 1000 folders on S3). On S3 a folder exists while it holds an object; a local folder
        can outlive its last file.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the object; an absent one is fine."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Copies the object to `dest` via a temp file beside it, so `dest` is never a partial file."""
