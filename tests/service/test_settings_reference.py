"""service.settings_reference: docs/service-settings.md lists every setting under the variable the
service really reads it from, with its description, and is what the generator makes."""

from __future__ import annotations

import pytest
from pydantic_settings import EnvSettingsSource

from service.settings import JobLimits, ServiceSettings, TokenEntry
from service.settings_reference import PAGE, SECTION, env_name, settings_reference
from trainer.config_reference import leaves
from trainer.contract.storage import StorageSettings
from trainer.markdown_sections import replace_section

ALL = [*leaves(ServiceSettings), *leaves(JobLimits), *leaves(TokenEntry)]
VARIABLES = [leaf for leaf in leaves(ServiceSettings) if leaf.section in ("", "s3")]  # limits: JSON keys


def test_every_setting_has_a_description():
    assert [leaf.key for leaf in ALL if not leaf.field.description] == []


@pytest.mark.parametrize("leaf", VARIABLES, ids=lambda leaf: leaf.key)
def test_each_variable_named_is_the_one_the_settings_read(leaf, monkeypatch):
    name = env_name(leaf)
    assert name.startswith("ANCHOR_OPT_")
    monkeypatch.setenv(name, "1")
    model = StorageSettings if leaf.section == "s3" else ServiceSettings
    found = EnvSettingsSource(model)()
    assert leaf.name in found or name in found, f"{name} is not read for {leaf.key}"


def test_the_page_names_every_variable_and_key():
    text = settings_reference()
    for leaf in VARIABLES:
        assert f"| `{env_name(leaf)}` |" in text
    for leaf in [*leaves(JobLimits), *leaves(TokenEntry)]:
        assert f"| `{leaf.key}` |" in text
    assert "| `ANCHOR_OPT_CACHE_DIR` | `~/.cache/anchor-opt` |" in text  # its alias, the reader's home


def test_the_committed_page_is_what_the_generator_makes():
    page = PAGE.read_text()
    assert page == replace_section(page, SECTION, settings_reference()), (
        "docs/service-settings.md is stale: run make docs"
    )
