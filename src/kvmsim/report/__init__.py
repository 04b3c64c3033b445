"""How kvmsim shows results: a terminal timeline (``text``), versioned JSON (``json``) and the
live progress display (``progress``)."""

from .json import FORMAT, result_document
from .text import plain_console, print_result, render_result

__all__ = ["FORMAT", "plain_console", "print_result", "render_result", "result_document"]
