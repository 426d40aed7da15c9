"""Generated sections of Markdown pages: text between two markers that a generator owns.

    <!-- generated: configuration (make docs, from trainer/config.py; edit there, not here) -->
    ...
    <!-- end generated: configuration -->

`make docs` rewrites what lies between the markers (trainer.config_reference, service.settings_reference,
deploy/values_table.py); the tests fail when a committed page differs from what its generator makes,
so a reference cannot drift from the code it describes. Everything outside the markers is prose a
person writes. Importable without torch: the service and the deploy tools use it too.
"""

from __future__ import annotations

import re
from pathlib import Path

_CODE_SPAN = re.compile(r"(`[^`]*`)")


def _markers(name: str) -> tuple[re.Pattern[str], str]:
    start = re.compile(rf"^<!-- generated: {re.escape(name)}\b[^\n]*-->\n", re.MULTILINE)
    return start, f"<!-- end generated: {name} -->"


def replace_section(page: str, name: str, body: str) -> str:
    """`page` with the section `name` holding `body` instead; ValueError when its markers are missing."""
    start, end = _markers(name)
    opened = start.search(page)
    if opened is None:
        raise ValueError(f"no '<!-- generated: {name} ... -->' line in the page")
    closed = page.find(end, opened.end())
    if closed < 0:
        raise ValueError(f"the generated section {name!r} has no '{end}' line")
    return page[: opened.end()] + "\n" + body.strip("\n") + "\n\n" + page[closed:]


def update_page(path: Path, sections: dict[str, str], write: bool) -> bool:
    """Whether `path` already holds `sections` (name -> body); with `write`, makes it so."""
    old = path.read_text()
    new = old
    for name, body in sections.items():
        new = replace_section(new, name, body)
    if write and new != old:
        path.write_text(new)
    return new == old


def table_cell(text: str) -> str:
    """`text` for a Markdown table cell, shown as written: whitespace collapsed, `|` escaped, and `<`
    and `*` escaped outside code spans (GitHub would take `<uid>` for a tag, `AWS_*` for emphasis)."""
    parts = _CODE_SPAN.split(" ".join(text.split()))
    text = "".join(part if i % 2 else re.sub(r"([<*])", r"\\\1", part) for i, part in enumerate(parts))
    return text.replace("|", "\\|")
