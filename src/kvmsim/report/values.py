"""How a report writes state values and the changes a step made.

``ValueStyle`` (the default) writes ``repr`` and shortens long values with an ellipsis.
``CompactStyle`` never shortens: it writes values compactly (no quotes around identifiers,
sets sorted, large integers in hex if asked) and a change to a long tuple or to a set as what
changed in it: ``mm.page_ref: [0] 2→3, [2] 0→1`` (entries 0 and 2 changed),
``cpu0.tlb: −(L1, 0xfee00, 0)`` (an entry left the set). With the initial values a report
prints first, every state of a trace can still be worked out exactly.
"""

from __future__ import annotations

import re
from typing import Any

ARROW = "→"
_IDENT = re.compile(r"[A-Za-z_][\w.>-]*")


class ValueStyle:
    """repr, shortened with an ellipsis past ``width`` characters."""

    width = 60

    def value(self, value: Any) -> str:
        text = repr(value)
        return text if len(text) <= self.width else text[: self.width - 1] + "…"

    def change(self, var: str, before: Any, after: Any) -> str:
        return f"{var}: {self.value(before)}{ARROW}{self.value(after)}"


class CompactStyle(ValueStyle):
    """Complete and compact: nothing is ever cut off.

    hex_from: integers at least this large are written in hex (addresses, frame numbers).
    diff_from: a tuple whose compact form is longer than this is shown changed entry by
    changed entry; two non-empty sets are always shown as the entries that left (−) and
    joined (+).
    """

    def __init__(self, hex_from: int | None = None, diff_from: int = 24) -> None:
        self.hex_from = hex_from
        self.diff_from = diff_from

    def value(self, value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return repr(value)
        if isinstance(value, int):
            if self.hex_from is not None and abs(value) >= self.hex_from:
                return hex(value)
            return str(value)
        if isinstance(value, str):
            plain = _IDENT.fullmatch(value) and value not in ("None", "True", "False")
            return value if plain else repr(value)
        if isinstance(value, tuple):
            inner = ", ".join(self.value(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if isinstance(value, list):
            return "[" + ", ".join(self.value(v) for v in value) + "]"
        if isinstance(value, (frozenset, set)):
            return "{" + ", ".join(self._sorted(value)) + "}"
        return repr(value)

    def _sorted(self, items: Any) -> list[str]:
        return sorted((self.value(v) for v in items), key=_natural)

    def change(self, var: str, before: Any, after: Any) -> str:
        if (
            isinstance(before, tuple)
            and isinstance(after, tuple)
            and len(before) == len(after)
            and len(self.value(before)) > self.diff_from
        ):
            parts = [
                f"[{i}] {self.value(b)}{ARROW}{self.value(a)}"
                for i, (b, a) in enumerate(zip(before, after))
                if b != a or type(b) is not type(a)
            ]
            return f"{var}: {', '.join(parts)}"
        if isinstance(before, frozenset) and isinstance(after, frozenset) and before and after:
            gone = [f"−{v}" for v in self._sorted(before - after)]
            new = [f"+{v}" for v in self._sorted(after - before)]
            return f"{var}: {' '.join(gone + new)}"
        return super().change(var, before, after)


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key: numbers inside the text compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))
