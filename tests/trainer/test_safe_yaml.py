"""The safe YAML loader every user-written YAML goes through: duplicate keys, alias bombs, recursive
aliases and deep nesting refused with the file and line; small aliases and merge keys still work."""

from __future__ import annotations

import pytest

from trainer.safe_yaml import MAX_DEPTH, MAX_EXPANDED, YamlInputError, parse_yaml, read_yaml_mapping


def laughs(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level a list of `width` aliases of the level below (width**levels)."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_duplicate_key_names_the_file_both_lines_and_the_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: first\noptim:\n  epochs: 1\n  lr: 0.1\n  epochs: 3\n")
    needle = r"job.yaml, line 5: duplicate key 'epochs' \(first given on line 3\)"
    with pytest.raises(YamlInputError, match=needle):
        read_yaml_mapping(path)
    path.write_text("name: first\nname: second\n")
    with pytest.raises(YamlInputError, match="line 2: duplicate key 'name'"):
        read_yaml_mapping(path)


def test_small_aliases_and_merge_keys_still_work():
    data = parse_yaml("base: &b {epochs: 2, lr: 0.1}\nfast: {<<: *b, lr: 0.5}\nsame: *b\n")
    assert data["fast"] == {"epochs": 2, "lr": 0.5} and data["same"] == {"epochs": 2, "lr": 0.1}


def test_the_billion_laughs_is_refused_before_anything_expands_it():
    assert parse_yaml(laughs(3))["l2"][8][8] == ["lol"] * 9  # 729 laughs: fine
    with pytest.raises(YamlInputError, match=f"expands past {MAX_EXPANDED:,} characters with its aliases"):
        parse_yaml(laughs(7), "bomb.yaml")  # 9**7 = 4.8 million laughs
    with pytest.raises(YamlInputError):
        parse_yaml(laughs(6))  # 530,000 laughs: over the bound too
    with pytest.raises(YamlInputError, match="bomb.yaml, line"):
        parse_yaml(laughs(12), "bomb.yaml")  # 2.8e11: measured without being expanded


def test_one_alias_of_a_long_string_repeated_is_refused_too():
    text = f"s: &s {'x' * 100_000}\nmany: [{', '.join(['*s'] * 100)}]\n"  # 10 MB once written out
    with pytest.raises(YamlInputError, match="expands past"):
        parse_yaml(text)


def test_recursive_aliases_and_deep_nesting_are_refused():
    with pytest.raises(YamlInputError, match="line 1: a recursive alias"):
        parse_yaml("a: &a [1, *a]\n")
    deep = "\n".join([f"d{i}: &d{i} [*d{i - 1}]" if i else "d0: &d0 [1]" for i in range(MAX_DEPTH + 1)])
    with pytest.raises(YamlInputError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_yaml(deep)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.mkdir(), "is a folder, not a YAML file"),
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("- a\n"), "the top level must be a mapping (key: value lines), not a list"),
        (lambda p: p.write_text("just words\n"), "not a string"),
        (lambda p: p.write_bytes(b"name: \xff\xfe\n"), "not UTF-8 text"),
        (lambda p: p.write_text("a: [1, 2\n"), "not valid YAML"),
        (lambda p: p.write_text("a: 1\n---\nb: 2\n"), "not valid YAML"),
    ],
)
def test_bad_files_are_one_clear_error_naming_the_file(tmp_path, make, needle):
    path = tmp_path / "job.yaml"
    make(path)
    with pytest.raises(YamlInputError) as err:
        read_yaml_mapping(path)
    assert str(err.value).startswith(str(path)) and needle in str(err.value)


def test_an_empty_file_is_an_empty_mapping(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert read_yaml_mapping(tmp_path / "empty.yaml") == {}
