"""A live progress line on stderr for long searches (states, states/s, depth, frontier).

It appears only after the search has run for ``delay`` seconds, so quick runs print nothing,
and only when enabled: the CLI enables it (``wanted``) when stderr is a terminal, ``--quiet``
is not given, ``NO_COLOR`` is not set (https://no-color.org: the display is a redrawn,
styled line) and ``TERM`` is not ``dumb``. It is transient: it disappears when the search
ends.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..engine import Progress

FRONTIER = {"bfs": "queue", "dfs": "stack", "random": "runs left", "swarm": "runs left"}


def wanted(quiet: bool) -> bool:
    """Show progress only on an interactive stderr, when not asked to be quiet, without
    NO_COLOR set (to anything but the empty string) and on a terminal that can redraw."""
    if quiet or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class TransientLine:
    """A single redrawn line on stderr that disappears when closed; a context manager."""

    def __init__(self) -> None:
        self.live: Live | None = None

    def show(self, text: Text) -> None:
        if self.live is None:
            self.live = Live(
                text,
                console=Console(stderr=True),
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start(refresh=True)
        else:
            self.live.update(text, refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LiveProgress(TransientLine):
    """A progress callback for ``Options.progress``; use it as a context manager."""

    def __init__(self, label: str, mode: str, *, enabled: bool, delay: float = 1.0) -> None:
        super().__init__()
        self.label = label
        self.frontier = FRONTIER.get(mode, "frontier")
        self.enabled = enabled
        self.delay = delay

    def __call__(self, p: Progress) -> None:
        if not self.enabled or p.seconds < self.delay:
            return
        self.show(self.render(p))

    def render(self, p: Progress) -> Text:
        return Text(
            f"{self.label}: {p.states:,} states · {p.states_per_second:,.0f} states/s · "
            f"depth {p.depth:,} · {self.frontier} {p.queue:,} · {p.seconds:.0f} s "
            "(Ctrl-C stops and reports)"
        )
