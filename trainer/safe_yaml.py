"""The one way to read YAML that a user wrote (job specs, train configs, `--set` values, dataset
yaml files): PyYAML's safe loader, plus three refusals it does not make by itself.

- A key given twice in one mapping is an error naming the file, both lines and the key. PyYAML
  keeps the last one silently, so a second `optim:` section would quietly drop the first.
- Aliases may not expand the document past `MAX_EXPANDED` (characters of scalars plus one per
  node, counted as if every alias were written out). The parser shares an aliased node, so loading
  a "billion laughs" costs nothing; whatever walks the result afterwards (validation, `json.dumps`
  for the API) pays for every copy: a 9^7 bomb took 100 MB in the client. Small aliases and merge
  keys (`<<: *defaults`) stay allowed: they are how people share a block between config files, and
  the harm is in the expansion, which this bounds (a cap on the number of aliases would not: one
  alias of a long string repeated a thousand times is as bad). A recursive alias is refused.
- Nesting deeper than `MAX_DEPTH` is refused (a spec is a few levels deep).

Torch-free: the service's CLI uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_EXPANDED = 1_000_000  # the API takes 1 MiB bodies by default: a spec this big could not be sent anyway
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml when PyYAML has it (it also caps nesting itself, at 1000 levels); the pure-Python loader else.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlInputError(ValueError):
    """Unreadable or refused YAML; the message names the file (or the input) and the line."""


class _Loader(_Base):  # type: ignore[misc,valid-type]
    source = "<input>"

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node, self.source)
        return self.construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # `<<:` merges; its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeConstructor reports it below
                    continue
                if first is not key_node:
                    raise YamlInputError(
                        f"{self.source}, line {_line(key_node)}: duplicate key {key!r} "
                        f"(first given on line {_line(first)})"
                    )
        return super().construct_mapping(node, deep=deep)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _check_expansion(root: Node, source: str) -> None:
    """Refuses a node graph that, with its aliases written out, is over MAX_EXPANDED or nests deeper
    than MAX_DEPTH, or that contains itself. Iterative, and each shared node is measured once: linear
    in the graph, whatever it would expand to."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, levels)
    on_path: set[int] = set()  # the nodes whose children are being measured: an ancestor again is a loop
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, ScalarNode):
            measured[key] = (1 + len(node.value), 1)
        elif children_done:
            on_path.discard(key)
            inner = [measured[id(c)] for c in _children(node)]
            size, levels = 1 + sum(s for s, _ in inner), 1 + max((d for _, d in inner), default=0)
            if size > MAX_EXPANDED:
                raise YamlInputError(
                    f"{source}, line {_line(node)}: this document expands past {MAX_EXPANDED:,} characters "
                    "with its aliases written out: refused (write the values out, or share less)"
                )
            if levels > MAX_DEPTH:
                raise YamlInputError(f"{source}, line {_line(node)}: nested deeper than {MAX_DEPTH} levels")
            measured[key] = (size, levels)
        elif key in on_path:
            raise YamlInputError(f"{source}, line {_line(node)}: a recursive alias (a node inside itself)")
        elif key not in measured:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in measured)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, source: str = "<input>") -> Any:
    """One YAML document from `text`, any type; YamlInputError naming `source` if bad or refused."""
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise YamlInputError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # the pure-Python composer is recursive
        raise YamlInputError(f"{source}: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file at `path` ({} if it is empty); YamlInputError naming the file when
    it is missing, a folder, unreadable, not UTF-8, not valid YAML, refused above, or not a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise YamlInputError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise YamlInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise YamlInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlInputError(f"{path}: the top level must be a mapping (key: value lines), not {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string"}.get(type(value), f"a {type(value).__name__}")
