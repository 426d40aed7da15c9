"""S3Storage, a bucket and key prefix on any S3 API: the shared boto3 session, clients, error mapping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from trainer.contract.storage.base import (
    AlreadyExists,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    Storage,
    StorageError,
    StorageSettings,
    Versioned,
    check_folder,
    check_key,
)
from trainer.contract.storage.local import write_atomically

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
# S3 answers a refused If-None-Match or If-Match with 412; 409 when another conditional write of the
# key is in flight (the one to retry after).
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
# One boto3 session per process, as boto3.client() does (so default-chain credentials are resolved
# once): a client from a fresh session parses the S3 model again (~0.1 s). Sessions are not
# thread-safe, so clients are made under a lock; clients themselves are.
_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def s3_client(settings: StorageSettings):
    """A boto3 S3 client from `settings`: standard retries, timeouts, addressing style, credentials."""
    config = Config(
        region_name=settings.region,
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=4 * settings.download_workers,  # fetch threads x transfer threads
        s3={"addressing_style": "path" if settings.path_style else "auto"},
    )
    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
    global _SESSION
    with _SESSION_LOCK:
        _SESSION = _SESSION or boto3.session.Session()
        return _SESSION.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=secret,
            config=config,
        )


@contextmanager
def _s3_errors(uri: str, action: str, *, refused: str | None = None) -> Iterator[None]:
    """Maps botocore errors to NotFound / AlreadyExists / PreconditionFailed / StorageError naming `uri`.

    `refused`: the condition of a conditional write ("absent" for If-None-Match, "match" for If-Match)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if refused == "absent" and code in _PRECONDITION_CODES:
            raise AlreadyExists(f"{uri}: already exists (conditional create refused)", uri) from None
        if refused == "match" and (code in _PRECONDITION_CODES or code in _NOT_FOUND_CODES):
            # NoSuchKey: deleted since it was read, which is a change too.
            raise PreconditionFailed(
                f"{uri}: changed since it was read (conditional write refused)", uri
            ) from None
        if code in _NOT_FOUND_CODES:
            raise NotFound(f"{uri}: no such object", uri) from None
        raise StorageError(
            f"{uri}: {action} failed: {code} {error.get('Message', '')}".rstrip(), uri
        ) from exc
    except (BotoCoreError, Boto3Error, TransferRetriesExceeded) as exc:  # connection errors after retries
        raise StorageError(f"{uri}: {action} failed: {exc}", uri) from exc


class S3Storage(Storage):
    """A bucket and key prefix on any S3 API, through one boto3 client built from the settings."""

    def __init__(self, bucket: str, prefix: str, settings: StorageSettings, *, page_size: int = 1000):
        if not bucket or "/" in bucket:
            raise ValueError(f"bad S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        if prefix:
            check_key(prefix, self.uri)
        self.prefix = prefix + "/" if prefix else ""  # prepended to every key
        self.settings = settings
        self.page_size = page_size  # keys per ListObjectsV2 page (S3's maximum is 1000)
        self.client = s3_client(self.settings)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key, self.uri_for(key))

    def read_bytes(self, key: str) -> bytes:
        full = self._key(key)
        with _s3_errors(self.uri_for(key), "read"):
            return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()

    def read_versioned(self, key: str) -> Versioned:
        full = self._key(key)
        with _s3_errors(self.uri_for(key), "read"):
            got = self.client.get_object(Bucket=self.bucket, Key=full)
            return Versioned(got["Body"].read(), got["ETag"].strip('"'))  # the ETag of these very bytes

    def write_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> None:
        # S3 conditional writes (botocore >= 1.35.69 for IfMatch): the check and the write are one step.
        if if_absent and if_match is not None:
            raise ValueError("write_bytes: if_absent and if_match exclude each other")
        extra, refused = {}, None
        if if_absent:
            extra, refused = {"IfNoneMatch": "*"}, "absent"
        elif if_match is not None:
            extra, refused = {"IfMatch": f'"{if_match}"'}, "match"
        full = self._key(key)
        with _s3_errors(self.uri_for(key), "write", refused=refused):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **extra)

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        with _s3_errors(self.uri_for(key), "stat"):
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        return ObjectInfo(key, int(head["ContentLength"]), head["ETag"].strip('"'))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_key(prefix, self.uri_for(prefix), prefix=True)
        found = []
        with _s3_errors(self.uri_for(prefix), "list"):
            for page in self._pages(self.prefix + prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) :]
                    if key and not key.endswith("/"):  # "folder/" markers made by consoles hold nothing
                        found.append(ObjectInfo(key, int(obj["Size"]), obj["ETag"].strip('"')))
        return sorted(found, key=lambda o: o.key)

    def folders(self, prefix: str = "") -> list[str]:
        full = self.prefix + check_folder(prefix, self.uri_for(prefix))
        names = []
        with _s3_errors(self.uri_for(prefix), "list"):
            for page in self._pages(full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(full) : -1]
                    if name:  # "jobs//x" makes a common prefix "jobs//": no folder a key can name
                        names.append(name)
        return sorted(names)

    def _pages(self, full_prefix: str, **extra) -> Iterator[dict]:
        """ListObjectsV2 pages under a full key prefix (the storage's own prefix included)."""
        return self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self.page_size}, **extra
        )

    def delete(self, key: str) -> None:
        full = self._key(key)
        with _s3_errors(self.uri_for(key), "delete"):
            self.client.delete_object(Bucket=self.bucket, Key=full)  # S3 answers 204 for absent keys too

    def download(self, key: str, dest: Path) -> None:
        full, uri = self._key(key), self.uri_for(key)
        with _s3_errors(uri, "download"):  # s3transfer: ranged parallel GETs for big objects, read retries
            write_atomically(Path(dest), lambda f: self.client.download_fileobj(self.bucket, full, f), uri)
