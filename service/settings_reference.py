"""The service settings reference (docs/service-settings.md), made from the settings models: every
`ANCHOR_OPT_*` variable, the keys of `ANCHOR_OPT_LIMITS` and of a token entry, each with its default,
allowed values and description (trainer.config_reference renders the tables).

    python -m service.settings_reference           rewrite the page's generated section
    python -m service.settings_reference --check   exit 1 when it is stale (make test checks it)
"""

from __future__ import annotations

import sys

from pydantic_settings import BaseSettings

from service.settings import JobLimits, ServiceSettings, TokenEntry
from trainer.config_reference import REPO, Leaf, leaves, main, markdown_table

PAGE = REPO / "docs" / "service-settings.md"
SECTION = "service-settings"


def env_name(leaf: Leaf) -> str:
    """The variable a setting is read from: its alias, else the prefix of the settings class it is in."""
    alias = leaf.field.validation_alias
    if isinstance(alias, str):
        return alias
    prefix = leaf.model.model_config.get("env_prefix", "") if issubclass(leaf.model, BaseSettings) else ""
    return (prefix + leaf.name).upper()


def settings_reference() -> str:
    """The generated section: the variables (the service's, then S3's), the job limits, token entries."""
    by_section: dict[str, list[Leaf]] = {}
    for leaf in leaves(ServiceSettings):
        by_section.setdefault(leaf.section, []).append(leaf)
    assert set(by_section) == {"", "s3", "limits"}, f"a new settings section: {sorted(by_section)}"
    return "\n\n".join(
        [
            "### The service",
            markdown_table(by_section[""], env_name, "variable"),
            "### S3 and the local cache",
            ServiceSettings.model_fields["s3"].description or "",
            markdown_table(by_section["s3"], env_name, "variable"),
            "### Job limits (`ANCHOR_OPT_LIMITS`)",
            " ".join(JobLimits.__doc__.split()),
            markdown_table(list(leaves(JobLimits)), lambda leaf: leaf.key),
            "### Token entries (`ANCHOR_OPT_TOKENS`)",
            " ".join(TokenEntry.__doc__.split()),
            markdown_table(list(leaves(TokenEntry)), lambda leaf: leaf.key),
        ]
    )


if __name__ == "__main__":
    sys.exit(main(page=PAGE, sections={SECTION: settings_reference()}))
