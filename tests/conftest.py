"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real COCO / VOC data beside the checkout (never copied)


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data`, or a skip that says why: these tests need the real datasets beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (the ../shared/data folder beside the repo)")
    return SHARED_DATA
