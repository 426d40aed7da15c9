"""Which paths of the build context a .dockerignore keeps out, by Docker's own rules
(moby/patternmatcher, as BuildKit applies them), so tests can check the file without a builder.

Rules: a line is a pattern, `#` starts a comment line, `!` re-includes; patterns are relative to
the context root (a leading `/` is dropped) and cleaned like Go's filepath.Clean; `*` and `?` never
cross a `/`, `**` crosses any number of directories; a pattern that matches a directory also
matches everything under it; the last pattern that matches a path decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1 : i + 2] == "*":
            i += 1
            if pattern[i + 1 : i + 2] == "/":  # "**/": zero or more whole directories
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
        elif ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    include: bool  # a `!` line


class DockerIgnore:
    def __init__(self, lines: list[str]):
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = posixpath.normpath(line[1:].strip() if include else line).lstrip("/")
            self.rules.append(_Rule(_regex(pattern), include))

    @classmethod
    def from_file(cls, path: Path) -> DockerIgnore:
        return cls(path.read_text().splitlines() if path.exists() else [])

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context root, `/`-separated) stays out of the context."""
        parts = posixpath.normpath(path).lstrip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its parents
        result = False
        for rule in self.rules:
            if any(rule.regex.match(c) for c in candidates):
                result = not rule.include
        return result
