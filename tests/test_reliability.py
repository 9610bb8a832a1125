"""Every row of the fault checklist (docs/reliability.md, which holds ../shared/RELIABILITY.md's
rows and the project's own) is checked by at least one test.

Tests name their rows with @pytest.mark.reliability("D1", ...); this reads the marks from the
test sources (no import), so a row without a test fails here with its id and its text.
"""

from __future__ import annotations

import ast
import re

import pytest
from helpers.data import ROOT

CHECKLIST = ROOT / "docs" / "reliability.md"
SHARED = ROOT.parent / "shared" / "RELIABILITY.md"
ROW = re.compile(r"^\| ([A-Z]+\d+) \| (.+?) \|", re.MULTILINE)


def marked_rows() -> dict[str, list[str]]:
    """row id -> the tests that carry it in a reliability mark."""
    rows: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith(
                    "mark.reliability"
                ):
                    for arg in deco.args:
                        rows.setdefault(arg.value, []).append(f"{path.name}::{node.name}")
    return rows


def test_every_checklist_row_has_a_test():
    checklist = dict(ROW.findall(CHECKLIST.read_text()))
    assert len(checklist) >= 40, "the checklist's table format changed: update ROW"
    marked = marked_rows()
    missing = {row: text for row, text in checklist.items() if row not in marked}
    assert not missing, f"rows without a test: {missing}"
    unknown = set(marked) - set(checklist)
    assert not unknown, f"marks naming no checklist row: {sorted(unknown)}"


@pytest.mark.skipif(not SHARED.is_file(), reason=f"{SHARED} is not beside the checkout")
def test_the_projects_checklist_keeps_every_shared_row():
    shared = dict(ROW.findall(SHARED.read_text()))
    ours = dict(ROW.findall(CHECKLIST.read_text()))
    assert {row: text for row, text in shared.items() if ours.get(row) != text} == {}
