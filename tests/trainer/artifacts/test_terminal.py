"""The console's anchor tables."""

from rich.console import Console

from trainer.artifacts.terminal import level_column, result_anchors, snapshot_anchors


def _text(table) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()


def _result(strides, levels) -> dict:
    anchors = [[8.0, 9.0], [20.0, 12.0], [40.0, 70.0], [80.0, 80.0]][: len(levels)]
    return {
        "image_size": 256,
        "strides": strides,
        "levels": levels,
        "anchors": {"init": anchors, "final": anchors, "final_cells": anchors},
    }


def test_anchor_tables_name_each_anchors_level_on_several_levels():
    result = _result([8, 16], [0, 0, 1, 1])
    assert level_column(result) == {"level": ["P3/8", "P3/8", "P4/16", "P4/16"]}
    text = _text(result_anchors(result))
    assert "level" in text and text.count("P3/8") == 2 and text.count("P4/16") == 2
    snap = {"step": 4, "total_steps": 8, "phase": "main", "fit": {"mean_best_iou": 0.5}}
    snap |= {
        "strides": [8, 16],
        "levels": [0, 1],
        "anchors": [[8, 9], [40, 70]],
        "anchors_cells": [[1, 1], [2, 4]],
    }
    assert "P4/16" in _text(snapshot_anchors([snap]))


def test_one_level_and_documents_from_before_levels_have_no_level_column():
    assert level_column(_result([16], [0, 0, 0])) == {}
    old = _result([16], [0, 0])
    del old["strides"], old["levels"]
    assert level_column(old) == {} and "level" not in _text(result_anchors(old))
