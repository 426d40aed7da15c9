"""trainer.contract.layout: every key of a job's prefix, and steps read back from keys."""

from __future__ import annotations

import ast
import re

import pytest

from tests.helpers import REPO
from trainer.contract import layout


def test_steps_and_epochs_come_back_from_their_keys_under_any_prefix():
    for n in (0, 7, 100, 99_999_999):
        assert layout.number_of(layout.snapshot_key(n)) == n
        assert layout.number_of(layout.job_key("20261202-000000-abcdef", layout.snapshot_key(n))) == n
    for n in (0, 3, 9999):
        assert layout.number_of("s3/prefix/" + layout.metrics_key(n)) == n
    assert layout.snapshot_key(25) < layout.snapshot_key(100)  # a plain listing is in step order


@pytest.mark.parametrize("key", ["status.json", "anchors/x.json", "anchors/12.png", "artifacts/12.json", ""])
def test_other_keys_are_not_numbers(key):
    with pytest.raises(ValueError, match="not a snapshot or metrics key"):
        layout.number_of(key)


KEY_LIKE = re.compile(
    r"^(anchors|metrics|artifacts|checkpoints)/\S*$|^(job|status|result|dataset)\.json$|^boxes\.npy$|^config\.yaml$"
)


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)}


def test_no_module_but_the_layout_spells_a_key():
    """DESIGN.md: one module names every key. A key spelled anywhere else in trainer/ or service/ (a
    string constant that is a whole key) is a second source of truth. trainer/data/ is left out: the
    names there are a dataset's own files (a YOLO dataset's config.yaml), not keys of the store."""
    found = []
    for path in sorted([*(REPO / "trainer").rglob("*.py"), *(REPO / "service").rglob("*.py")]):
        if path.name == "layout.py" or (REPO / "trainer" / "data") in path.parents:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in docs else None
            if isinstance(text, str) and KEY_LIKE.match(text):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "keys spelled outside trainer/contract/layout.py:\n" + "\n".join(found)
