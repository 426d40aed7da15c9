"""Prints the project's requirements for the given extras, one per line, read from pyproject.toml.

    python requirements.py pyproject.toml train service > requirements.txt

The images install these before the source is copied in, so the dependency layers are rebuilt only
when this list changes, not on every code edit (nor on a pyproject.toml edit that leaves the list as
it is: the images copy the list, not pyproject.toml, into the stage that installs it). The project
itself is installed afterwards with --no-deps. Standard library only: it runs in a bare python image.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalised (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The base dependencies plus those of each extra, in file order, each line once."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    lines = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            known = ", ".join(sorted(optional)) or "none"
            raise ValueError(f"{pyproject}: no extra {extra!r} in [project.optional-dependencies] ({known})")
        lines += optional[extra]
    own = _name(project["name"])
    if selfish := [r for r in lines if _name(r) == own]:
        # An extra naming the project itself (anchor-opt[train]) would make pip fetch the project
        # from the index instead of the source being built here.
        raise ValueError(f"{pyproject}: {selfish} refer to the project itself; list the packages instead")
    return list(dict.fromkeys(lines))


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        sys.stderr.write("usage: requirements.py PYPROJECT [EXTRA ...]\n")
        return 2
    try:
        lines = requirements(Path(argv[0]), argv[1:])
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        sys.stderr.write(f"requirements.py: {exc}\n")
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
