"""trainer.config_reference: the configuration reference is made from the models (every field
described; choices, bounds and defaults read from the schema), and docs/configuration.md is what it
makes (a test that fails, telling to run `make docs`, when the page is stale)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from trainer.config_data import ShapeComponent
from trainer.config_reference import (
    PAGE,
    SECTION,
    allowed,
    configuration_reference,
    leaves,
    main,
    markdown_table,
)
from trainer.contract.spec import JobSpec
from trainer.markdown_sections import replace_section


class Inner(BaseModel):
    on: bool = Field(True, description="switch")


class Sample(BaseModel):
    kind: Literal["a", "b"] = Field("a", description="which")
    count: int = Field(3, ge=1, lt=10, description="how many")
    ratio: float | None = Field(None, gt=0, le=1, description="a share | or none")
    pairs: list[tuple[float, float]] = Field(default_factory=list, max_length=4, description="w, h")
    home: Path = Field(default_factory=lambda: Path.home() / "x", description="a <folder>")
    needed: str = Field(max_length=5, description="no default")
    inner: Inner = Field(default_factory=Inner, description="a section")


def test_every_setting_of_a_job_spec_has_a_description():
    missing = [leaf.key for leaf in leaves(JobSpec) if not leaf.field.description]
    missing += [f"shapes.{n}" for n, f in ShapeComponent.model_fields.items() if not f.description]
    assert missing == []


def test_sections_are_walked_after_their_own_settings_in_order():
    assert [leaf.key for leaf in leaves(Sample)] == [
        "kind",
        "count",
        "ratio",
        "pairs",
        "home",
        "needed",
        "inner.on",
    ]
    keys = [leaf.key for leaf in leaves(JobSpec)]
    assert (
        keys[:3] == ["seed", "device", "name"]
        and "resources.workers" in keys
        and "data.augment.hflip" in keys
    )


def test_allowed_values_come_from_the_schema():
    by_key = {leaf.key: allowed(leaf.schema) for leaf in leaves(Sample)}
    assert by_key["kind"] == "`a` or `b`"
    assert by_key["count"] == "integer (1 to 9)"  # < 10 for an integer is <= 9
    assert by_key["ratio"] == "null, or number (> 0, <= 1)"
    assert by_key["pairs"] == "list (0 to 4) of [number, number]"
    assert by_key["needed"] == "string (at most 5 characters)"
    assert by_key["inner.on"] == "true or false"


def test_a_table_shows_defaults_as_yaml_and_escapes_what_markdown_would_eat():
    table = markdown_table(list(leaves(Sample)), lambda leaf: leaf.key)
    assert "| `kind` | `a` | `a` or `b` | which |" in table
    assert "| `ratio` | `null` |" in table and "a share \\| or none" in table
    assert "| `home` | `~/x` |" in table and "a \\<folder>" in table  # the reader's home, not ours
    assert "| `needed` | required |" in table
    assert "| `inner.on` | `true` |" in table


def test_the_reference_has_every_key_and_real_defaults():
    text = configuration_reference()
    for leaf in leaves(JobSpec):
        assert f"| `{leaf.key}` |" in text
    assert "| `optim.epochs` | `10` | integer (1 to 10000) |" in text
    assert "### `tricks.soft_assign`" in text


def test_the_committed_page_is_what_the_generator_makes():
    page = PAGE.read_text()
    assert page == replace_section(page, SECTION, configuration_reference()), (
        "docs/configuration.md is stale: run make docs"
    )


def test_check_fails_on_a_stale_page_and_writing_fixes_it(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(PAGE.read_text().replace("| `optim.epochs` | `10` |", "| `optim.epochs` | `12` |"))
    assert main(["--check"], page=stale) == 1
    assert "stale: run make docs" in capsys.readouterr().err
    assert main([], page=stale) == 0 and main(["--check"], page=stale) == 0
    assert stale.read_text() == PAGE.read_text()


def test_a_page_without_the_markers_is_an_error_naming_them(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match="generated: configuration"):
        main(["--check"], page=page)
