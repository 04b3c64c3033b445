"""How reports write state values: the default (shortened repr) and the compact style."""

from __future__ import annotations

from kvmsim.report.values import CompactStyle, ValueStyle


def test_default_style_shortens_long_values() -> None:
    style = ValueStyle()
    assert style.value((1, 2)) == "(1, 2)"
    long = style.value(tuple(range(100)))
    assert len(long) == style.width and long.endswith("…")


def test_compact_values_are_complete() -> None:
    style = CompactStyle(hex_from=0x100)
    assert style.value(("L1", 0xFEE00, 0)) == "(L1, 0xfee00, 0)"
    assert style.value(frozenset({("L1", 0x100, 1), ("L1", 0xFEE00, 0)})) == (
        "{(L1, 0x100, 1), (L1, 0xfee00, 0)}"
    )
    assert style.value(frozenset()) == "{}"
    assert style.value((5,)) == "(5,)"
    assert style.value("two words") == "'two words'"
    assert style.value("None") == "'None'"
    assert style.value(None) == "None"
    assert style.value(True) == "True"
    assert "…" not in style.value(tuple(range(1000)))


def test_compact_changes_name_what_changed() -> None:
    style = CompactStyle(diff_from=12)
    before, after = (2, 2, 0, 0, 0, 0), (3, 2, 1, 0, 0, 0)
    assert style.change("mm.page_ref", before, after) == "mm.page_ref: [0] 2→3, [2] 0→1"
    assert style.change("mm.pte", (0, 1), (2, 1)) == "mm.pte: (0, 1)→(2, 1)"
    assert style.change("r", frozenset({"A", "B"}), frozenset({"B", "C"})) == "r: −A +C"
    assert style.change("r", frozenset(), frozenset({"A"})) == "r: {}→{A}"
    assert style.change("n", 0, 1) == "n: 0→1"
