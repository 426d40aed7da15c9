"""The configuration reference, made from the settings models themselves: every field's key, default,
allowed values (from its JSON schema: choices, bounds, lengths) and description (`Field(description=)`).

    python -m trainer.config_reference           rewrite docs/configuration.md's generated section
    python -m trainer.config_reference --check   exit 1 when that section is stale (make test checks it)

`leaves()` and `markdown_table()` are generic over pydantic models: service.settings_reference makes
the service settings' page with them. Importable without torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from trainer.markdown_sections import table_cell, update_page

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
SECTION = "configuration"


@dataclass(frozen=True)
class Leaf:
    """One setting: its dotted key, the section (model) it belongs to, and its field."""

    key: str
    section: str  # dotted key of its model ("" for the top level)
    model: type[BaseModel]
    name: str
    field: FieldInfo

    @property
    def default(self) -> Any:
        if self.field.default is PydanticUndefined and self.field.default_factory is None:
            return PydanticUndefined  # required
        return self.field.get_default(call_default_factory=True, validated_data={})

    @property
    def schema(self) -> dict:
        return _property_schema(self.model, self.name)


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    t = field.annotation
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def leaves(model: type[BaseModel], prefix: str = "") -> Iterator[Leaf]:
    """Every setting of `model`, sections (fields that are models themselves) walked in order, a
    section's own settings before its sub-sections'."""
    subsections = []
    for name, field in model.model_fields.items():
        if (inner := _section_model(field)) is not None:
            subsections.append((name, inner))
        else:
            yield Leaf(prefix + name, prefix.rstrip("."), model, name, field)
    for name, inner in subsections:
        yield from leaves(inner, f"{prefix}{name}.")


def section_descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Dotted key of every section of `model` -> its field's description."""
    found = {}
    for name, field in model.model_fields.items():
        if (inner := _section_model(field)) is not None:
            found[prefix + name] = field.description or ""
            found |= section_descriptions(inner, f"{prefix}{name}.")
    return found


@cache
def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def _property_schema(model: type[BaseModel], name: str) -> dict:
    schema = _schema(model)
    prop = schema.get("properties", {}).get(name)
    if prop is None:  # an alias: the schema names the field by it
        alias = model.model_fields[name].validation_alias or model.model_fields[name].alias
        prop = schema["properties"][alias]
    return _resolve(prop, schema.get("$defs", {}))


def _resolve(node: Any, defs: dict) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _bounds(node: dict, integer: bool) -> str:
    low = high = None
    if "minimum" in node:
        low = (">=", node["minimum"])
    elif "exclusiveMinimum" in node:
        low = (">=", node["exclusiveMinimum"] + 1) if integer else (">", node["exclusiveMinimum"])
    if "maximum" in node:
        high = ("<=", node["maximum"])
    elif "exclusiveMaximum" in node:
        high = ("<=", node["exclusiveMaximum"] - 1) if integer else ("<", node["exclusiveMaximum"])
    if low and high and low[0] == ">=" and high[0] == "<=":
        return f"{_number(low[1])} to {_number(high[1])}"
    return ", ".join(f"{bound[0]} {_number(bound[1])}" for bound in (low, high) if bound)


def _qualified(kind: str, qualifiers: list[str]) -> str:
    qualifiers = [q for q in qualifiers if q]
    return f"{kind} ({'; '.join(qualifiers)})" if qualifiers else kind


def allowed(node: dict) -> str:
    """A field's JSON schema in a few words: `adamw` or `sgd`; integer (1 to 32); list of ..."""
    if "anyOf" in node:
        kinds = [allowed(n) for n in node["anyOf"] if n.get("type") != "null"]
        nullable = any(n.get("type") == "null" for n in node["anyOf"])
        return ("null, or " if nullable else "") + ", or ".join(kinds)
    if "enum" in node:
        return " or ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    kind = node.get("type")
    if kind in ("integer", "number"):
        return _qualified(kind, [_bounds(node, kind == "integer")])
    if kind == "string":
        if node.get("format") == "password":
            return "string (secret)"
        pattern = f"matching `{node['pattern']}`" if "pattern" in node else ""
        longest = f"at most {node['maxLength']} characters" if "maxLength" in node else ""
        return _qualified("string", [pattern, longest])
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        if "prefixItems" in node:  # a tuple: its items in order
            return "[" + ", ".join(allowed(n) for n in node["prefixItems"]) + "]"
        count = f" ({node.get('minItems', 0)} to {node['maxItems']})" if "maxItems" in node else ""
        return f"list{count} of {allowed(node.get('items', {})) or 'anything'}"
    if kind == "object" and "properties" in node:
        return "{" + ", ".join(node["properties"]) + "}"
    if kind == "object":
        return "mapping"
    return kind or ""


def _flow(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float | int):
        return _number(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value) if str(value) else '""'


def shown_default(leaf: Leaf) -> str:
    """The default as a YAML value in backticks; "required" when there is none."""
    value = leaf.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path) and str(value).startswith(str(Path.home())):
        value = "~" + str(value)[len(str(Path.home())) :]  # the reader's home, not the generator's
    return f"`{_flow(to_jsonable_python(value))}`"


def markdown_table(rows: list[Leaf], name: Callable[[Leaf], str], header: str = "key") -> str:
    """A table of `rows`: name (in backticks) | default | allowed | meaning."""
    out = [f"| {header} | default | allowed | meaning |", "|---|---|---|---|"]
    for leaf in rows:
        cells = (f"`{name(leaf)}`", shown_default(leaf), allowed(leaf.schema), leaf.field.description or "")
        out.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return "\n".join(out)


def reference(model: type[BaseModel], top_title: str = "top level") -> str:
    """Every setting of `model`, one table per section, each under a `###` heading with the
    section's description."""
    described = section_descriptions(model)
    by_section: dict[str, list[Leaf]] = {}
    for leaf in leaves(model):
        by_section.setdefault(leaf.section, []).append(leaf)
    parts = []
    for section, rows in by_section.items():
        title = f"`{section}`" if section else top_title
        intro = described.get(section, "")
        table = markdown_table(rows, lambda r: r.key)
        parts.append(f"### {title}\n\n" + (f"{intro}\n\n" if intro else "") + table)
    return "\n\n".join(parts)


def configuration_reference() -> str:
    """The generated section of docs/configuration.md: a job spec's settings (a train config's
    sections plus `name` and `resources`)."""
    from trainer.contract.spec import JobSpec

    return reference(JobSpec)


def main(argv: list[str] | None = None, page: Path = PAGE, sections: dict | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite (or --check) a page's generated reference.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is stale; write nothing")
    args = parser.parse_args(argv)
    sections = sections if sections is not None else {SECTION: configuration_reference()}
    same = update_page(page, sections, write=not args.check)
    shown = page.relative_to(REPO) if page.is_relative_to(REPO) else page
    if args.check and not same:
        sys.stderr.write(f"{shown}: the generated reference is stale: run make docs\n")
        return 1
    if not same:
        sys.stdout.write(f"{shown}: reference updated\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
