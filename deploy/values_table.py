"""The "Values reference" table of deploy/helm/anchor-opt/README.md, made from values.yaml's comments.

    python deploy/values_table.py            rewrite the table in the README (`make docs`)
    python deploy/values_table.py --check    exit 1 when the README's table differs from what it makes

It reads deploy/helm/anchor-opt/values.yaml (other files with --values and --readme) and writes the
README's generated section `helm-values` (trainer/markdown_sections.py splices it between its markers).
Values come from PyYAML; comments from the lines above each key. The comment convention:

- A comment block directly above a key (no blank line between) describes it: its lines, joined with
  spaces, are the key's description. A blank line breaks the attachment, so the file's header (the
  top block, followed by a blank line) is no row.
- `# -- Name -----` starts a section: the table gets a `### Name` heading there; the line is no part
  of any description.
- Comment lines indented beyond `# ` are examples (`#   tokens:`): they stay out of the table, whose
  description says " Example in values.yaml." instead.
- Nested keys are dotted (`ray.worker.gpu`). A mapping with a comment of its own also gets a row
  (default "mapping"); mappings are recursed into; every leaf (a scalar, a list, `{}`) gets a row.
- A key without a comment of its own that directly follows (no blank line) a documented sibling of its
  kind (leaf or mapping) joins that sibling's row: `settings.recordCacheBytes`,
  `settings.viewCacheBytes` share one description, as do `podSecurityContext`, `securityContext`.

Defaults are compact YAML flow in backticks (`""`, `[]`, `{}`, `null`, `[s3]`), cut with "…" past 60
characters; `|` is escaped in every cell, `<` and `*` outside code spans.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trainer.markdown_sections import replace_section, table_cell, update_page  # noqa: E402

CHART = REPO / "deploy" / "helm" / "anchor-opt"
README = CHART / "README.md"
VALUES = CHART / "values.yaml"
SECTION = "helm-values"
HEADER = re.compile(r"^#\s*--\s+(?P<name>\S.*?)\s*-{3,}\s*$")
EXAMPLE_NOTE = "Example in values.yaml."
MAX_DEFAULT = 60  # characters of a default shown in the table; longer ones are cut
PLAIN = re.compile(r"[A-Za-z0-9_./-]+")  # strings shown without quotes (when YAML reads them back as such)


@dataclass
class Row:
    keys: list[str]
    defaults: list[str]  # each key's default, rendered compactly ("mapping" for a mapping)
    description: str
    section: str | None
    mapping: bool = False  # its keys are mappings with children (only keys of one kind share a row)


def flow(value: object) -> str:
    """`value` as compact YAML flow: `""`, `[]`, `{}`, `null`, `[s3]`, `{a: 1}`, `"0"`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        plain = PLAIN.fullmatch(value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(key)}: {flow(item)}" for key, item in value.items()) + "}"
    return json.dumps(str(value))


def describe(block: list[str]) -> str:
    """The description a key's comment block (its lines, `#` included) gives it."""
    words, example = [], False
    for line in block:
        text = line.strip()[1:]
        text = text[1:] if text.startswith(" ") else text
        if not text.strip():
            continue
        if text[0].isspace():
            example = True
        else:
            words.append(text.strip())
    description = " ".join(words)
    if example:
        description = f"{description} {EXAMPLE_NOTE}".strip()
    return description


def rows(text: str) -> list[Row]:
    """The table's rows for a values.yaml text, in the file's order."""
    lines = text.splitlines()
    values = yaml.safe_load(text) or {}
    root = yaml.compose(text)
    headers = [(i, m["name"]) for i, line in enumerate(lines) if (m := HEADER.match(line.strip()))]
    found: list[Row] = []
    if isinstance(root, yaml.MappingNode):
        _walk(root, values, "", lines, headers, found)
    return found


def _walk(node: yaml.MappingNode, values: dict, prefix: str, lines, headers, found: list[Row]) -> None:
    previous: Row | None = None  # the row of the sibling just before, when that has a description
    for key_node, value_node in node.value:
        name = key_node.value
        path, value, at = prefix + name, values[name], key_node.start_mark.line
        nested = isinstance(value_node, yaml.MappingNode) and bool(value_node.value)
        default = "mapping" if nested else flow(value)
        start = at
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        after_header = [i + 1 for i in range(start, at) if HEADER.match(lines[i].strip())]
        description = describe(lines[max([start, *after_header]) : at])  # a header is no description
        follows = start == at and at > 0 and lines[at - 1].strip() != ""  # no comment, no blank line
        row: Row | None
        if description:
            row = Row([path], [default], description, _section(at, headers), nested)
            found.append(row)
        elif follows and previous is not None and previous.mapping == nested:
            row = previous
            row.keys.append(path)
            row.defaults.append(default)
        elif not nested:
            row = Row([path], [default], "", _section(at, headers), nested)
            found.append(row)
        else:
            row = None
        previous = row if row is not None and row.description else None
        if nested:
            _walk(value_node, value, path + ".", lines, headers, found)


def _section(line: int, headers: list[tuple[int, str]]) -> str | None:
    names = [name for at, name in headers if at < line]
    return names[-1] if names else None


def _code(text: str) -> str:
    if len(text) > MAX_DEFAULT:
        return f"`{text[: MAX_DEFAULT - 3]}…` (see values.yaml)"
    return text if text == "mapping" else f"`{text}`"


def table(text: str) -> str:
    """The generated section's body: a `### section` heading and a table per section of values.yaml."""
    out: list[str] = []
    section: object = object()  # none seen yet
    for row in rows(text):
        if row.section != section:
            section = row.section
            if out:
                out.append("")
            if section is not None:
                out += [f"### {section}", ""]
            out += ["| key | default | description |", "|---|---|---|"]
        keys = ", ".join(f"`{key}`" for key in row.keys)
        shown = row.defaults[:1] if len(set(row.defaults)) == 1 else row.defaults
        defaults = ", ".join(_code(default) for default in shown)
        cells = (keys, defaults, row.description)
        out.append("| " + " | ".join(table_cell(cell) for cell in cells) + " |")
    return "\n".join(out) + "\n"


def render(readme: str, values: str) -> str:
    """`readme` with its values table made from `values` (a values.yaml text)."""
    return replace_section(readme, SECTION, table(values))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the table is stale; write nothing")
    parser.add_argument("--readme", type=Path, default=README, help="the README to update (the chart's)")
    parser.add_argument("--values", type=Path, default=VALUES, help="the values.yaml to read (the chart's)")
    args = parser.parse_args(argv)
    try:
        same = update_page(args.readme, {SECTION: table(args.values.read_text())}, write=not args.check)
    except ValueError as error:
        sys.stderr.write(f"{_shown(args.readme)}: {error}\n")
        return 2
    if args.check and not same:
        sys.stderr.write(f"{_shown(args.readme)}: the values table is stale: run make docs\n")
        return 1
    if not same:
        sys.stdout.write(f"{_shown(args.readme)}: values table updated\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
