"""deploy/values_table.py: the chart README's values table, made from values.yaml's comments.

The parser on small inline values files (which comment belongs to which key, sections, dotted keys,
shared rows, examples, defaults), then the real chart: every leaf key is in the table, and the
committed README holds exactly what the generator makes (else: run make docs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import yaml

from tests.helpers import REPO

SCRIPT = REPO / "deploy" / "values_table.py"
_spec = importlib.util.spec_from_file_location("values_table", SCRIPT)
values_table = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = values_table  # dataclasses look their module up there
_spec.loader.exec_module(values_table)


def rows(text: str) -> dict[str, tuple[list[str], str]]:
    """First key of each row -> (the row's keys, its description)."""
    return {row.keys[0]: (row.keys, row.description) for row in values_table.rows(textwrap.dedent(text))}


def test_a_comment_directly_above_a_key_describes_it_and_the_file_header_is_no_row():
    found = rows(
        """\
        # mychart: what it deploys.
        #   bucket   required

        # Replaces the chart name
        # in resource names.
        nameOverride: ""
        """
    )
    assert found == {"nameOverride": (["nameOverride"], "Replaces the chart name in resource names.")}


def test_a_blank_line_breaks_the_attachment():
    found = rows(
        """\
        # About port, or about nothing.

        port: 8000
        """
    )
    assert found == {"port": (["port"], "")}


def test_a_section_header_is_a_heading_and_no_part_of_a_description():
    text = textwrap.dedent(
        """\
        # -- API Deployment ----------------------------------------
        # Pods of the API.
        replicaCount: 1

        # -- Ray cluster (KubeRay) ---------------------------------
        ray:
          # GPUs per pod.
          gpu: 1
        """
    )
    found = {row.keys[0]: (row.section, row.description) for row in values_table.rows(text)}
    assert found == {
        "replicaCount": ("API Deployment", "Pods of the API."),
        "ray.gpu": ("Ray cluster (KubeRay)", "GPUs per pod."),
    }
    table = values_table.table(text)
    assert "### API Deployment\n" in table and "### Ray cluster (KubeRay)\n" in table
    assert "----" not in table.replace("|---|---|---|", "")
    assert table.index("### API Deployment") < table.index("`replicaCount`") < table.index("### Ray cluster")


def test_nested_keys_are_dotted_and_a_documented_mapping_has_a_row_of_its_own():
    found = rows(
        """\
        # The store.
        a:
          b:
            # Deep.
            c: 1
          d: x
        """
    )
    assert found == {"a": (["a"], "The store."), "a.b.c": (["a.b.c"], "Deep."), "a.d": (["a.d"], "")}
    assert "| `a` | mapping | The store. |" in values_table.table("# The store.\na:\n  d: x\n")


def test_an_undocumented_key_directly_after_a_documented_sibling_joins_its_row():
    found = rows(
        """\
        settings:
          # Bytes of cache (records, views).
          recordCacheBytes: null
          viewCacheBytes: null
          # Its own.
          other: 1
          after: 2

          apart: 3
        # A leaf.
        version: "1"
        image:
          tag: ""
        """
    )
    assert found["settings.recordCacheBytes"] == (
        ["settings.recordCacheBytes", "settings.viewCacheBytes"],
        "Bytes of cache (records, views).",
    )
    assert found["settings.other"] == (["settings.other", "settings.after"], "Its own.")
    assert found["settings.apart"] == (["settings.apart"], "")  # after a blank line: a row of its own
    assert found["version"] == (["version"], "A leaf.")  # a mapping does not join a leaf's row
    assert found["image.tag"] == (["image.tag"], "")
    table = values_table.table("# Cache.\nrecordCacheBytes: null\nviewCacheBytes: null\n")
    assert "| `recordCacheBytes`, `viewCacheBytes` | `null` | Cache. |" in table


def test_example_lines_stay_out_of_the_cell():
    text = """\
        # API tokens, as hashes.
        #   tokens:
        #     - tenant: vision
        #       # optional:
        #       max_gpus: 4
        # One set of limits per tenant.
        tokens: []
        """
    assert (
        rows(text)["tokens"][1]
        == "API tokens, as hashes. One set of limits per tenant. Example in values.yaml."
    )
    table = values_table.table(textwrap.dedent(text))
    assert "tenant: vision" not in table and "max_gpus" not in table


def test_list_items_under_a_key_are_its_value_not_keys():
    found = rows(
        """\
        ingress:
          # Hosts.
          hosts:
            - host: example.com
              paths:
                - path: /
                  pathType: Prefix
          tls: []
        """
    )
    assert list(found) == ["ingress.hosts"]
    assert found["ingress.hosts"][0] == ["ingress.hosts", "ingress.tls"]


def test_defaults_are_compact_flow_yaml():
    flow = values_table.flow
    assert [flow(v) for v in ("", [], {}, None, True, 8000, "IfNotPresent")] == [
        '""',
        "[]",
        "{}",
        "null",
        "true",
        "8000",
        "IfNotPresent",
    ]
    assert flow(["s3"]) == "[s3]"
    assert flow("0") == '"0"' and flow("true") == '"true"'  # quoted where YAML would read another type
    assert flow({"drop": ["ALL"], "a": {"b": 1}}) == "{drop: [ALL], a: {b: 1}}"
    assert flow("http://x:9000") == '"http://x:9000"'
    long = "hosts:\n  - host: " + "a" * 80 + "\n"
    row = values_table.table(long).splitlines()[-1]
    assert row.startswith("| `hosts` | `[{host: aaa") and "…` (see values.yaml) |" in row
    assert len(row.split(" | ")[1]) < 80


def test_pipes_are_escaped_in_cells():
    table = values_table.table('# Either a | b.\nsep: "|"\n')
    assert table.splitlines()[-1] == '| `sep` | `"\\|"` | Either a \\| b. |'


def _leaves(value: object, prefix: str = ""):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def _generated_section(page: str) -> str:
    start = page.index("<!-- generated: helm-values")
    return page[start : page.index("<!-- end generated: helm-values -->", start)]


def test_every_leaf_key_of_the_chart_values_is_in_the_table():
    leaves = list(_leaves(yaml.safe_load(values_table.VALUES.read_text())))
    section = _generated_section(values_table.README.read_text())
    assert len(leaves) > 100
    missing = [leaf for leaf in leaves if f"`{leaf}`" not in section]
    assert missing == [], "values.yaml keys missing from the README's values table: run make docs"


def test_the_committed_values_table_is_what_the_generator_makes():
    committed = values_table.README.read_text()
    made = values_table.render(committed, values_table.VALUES.read_text())
    assert committed == made, (
        "deploy/helm/anchor-opt/README.md: the values table is stale: run make docs "
        "(python deploy/values_table.py)"
    )


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO)


def test_check_exits_non_zero_on_a_stale_readme_and_rewriting_fixes_it(tmp_path):
    readme = tmp_path / "README.md"
    page = values_table.README.read_text()
    row = "| `replicaCount` | `1` |"
    assert row in page
    readme.write_text(page.replace(row, "| `replicaCount` | `3` |"))
    paths = ("--readme", str(readme), "--values", str(values_table.VALUES))

    stale = _run("--check", *paths)
    assert stale.returncode == 1
    assert stale.stderr.strip() == f"{readme}: the values table is stale: run make docs"
    assert readme.read_text() != page  # --check writes nothing

    assert _run(*paths).returncode == 0
    assert readme.read_text() == page
    assert _run("--check", *paths).returncode == 0
