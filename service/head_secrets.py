"""What keeps the embedded Ray head's secrets to this service: private folders and 0600 files for its
token and S3 keys, and a copy of the service's environment scrubbed of secrets for the head (every
Ray job inherits the head's environment). No torch, no Ray."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

# Variables never passed to the head: secrets by name. Names ending in _FILE, _PATH or _DIR only say
# where something is (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) and stay.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_KEY", re.I)
_REFERENCE_NAME = re.compile(r"_(FILE|PATH|DIR)$", re.I)
# Which profile boto3 and pyarrow read: with our credentials file it must be its [default].
PROFILE_NAMES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def private_dir(path: Path) -> Path:
    """`path`, made if missing (0700); refused when it is a link, another user's, or writable by
    others: whoever could replace the files in it could make the service use their token or head."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(
            f"{path} is not a folder of this user's alone (the embedded Ray head keeps its token there): "
            "remove it, or set ray_temp_dir (ANCHOR_OPT_RAY_TEMP_DIR) to another folder"
        )
    return path


def write_private(folder: Path, prefix: str, text: str) -> Path:
    """A new file under `folder` readable by this user only (0600 from its creation), holding `text`."""
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)  # O_EXCL, mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


def static_s3_credentials(s3, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The service's static S3 keys (its settings', else the AWS_* variables'), in the AWS
    shared-credentials file's names; None when it uses another source (a profile, a role), which
    the head's processes then resolve the same way."""
    if s3 is not None and s3.access_key_id and s3.secret_access_key:
        keys = {"aws_access_key_id": s3.access_key_id}
        keys["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
    elif environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        keys = {"aws_access_key_id": environ["AWS_ACCESS_KEY_ID"]}
        keys["aws_secret_access_key"] = environ["AWS_SECRET_ACCESS_KEY"]
        if environ.get("AWS_SESSION_TOKEN"):
            keys["aws_session_token"] = environ["AWS_SESSION_TOKEN"]
    else:
        return None
    if any(c in v for v in keys.values() for c in "\r\n"):
        raise ValueError("S3 credentials: a key holds a line break")
    return keys


def scrubbed_environment(environ: Mapping[str, str], secret_values: set[str] = frozenset()) -> dict[str, str]:
    """`environ` without its secrets: variables named like one, and any whose value holds one of
    `secret_values` whatever its name (a password copied into another variable)."""
    values = {v for v in secret_values if v}
    return {
        name: value
        for name, value in environ.items()
        if not (_SECRET_NAME.search(name) and not _REFERENCE_NAME.search(name))
        and not any(v in value for v in values)
    }
