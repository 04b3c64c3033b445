"""Run SPIN on apic_v65.pml: ``spin -a``, ``gcc -DNOREDUCE -DSAFETY``, ``pan``, and read its
figures. Installs nothing: :func:`missing_tools` says what to install."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PML = Path(__file__).with_name("apic_v65.pml")
INSTALL_HINT = "apt-get install spin"


def missing_tools() -> str | None:
    """None when spin and gcc are on PATH, otherwise a sentence saying what is missing."""
    missing = [tool for tool in ("spin", "gcc") if shutil.which(tool) is None]
    if not missing:
        return None
    hint = f" ({INSTALL_HINT})" if "spin" in missing else ""
    return f"{' and '.join(missing)} not found on PATH{hint}"


@dataclass
class PanResult:
    states: int  # pan's "states, stored"
    transitions: int  # pan's "transitions"
    errors: int  # assertion violations found (pan runs with -c0: it does not stop at them)
    compile_seconds: float  # spin -a + gcc
    search_seconds: float  # pan's own run, wall clock
    memory_mb: float  # pan's "total actual memory usage"
    complete: bool  # pan finished its search (not out of memory, not timed out)
    note: str = ""  # why not complete
    output: str = ""

    @property
    def total_seconds(self) -> float:
        return self.compile_seconds + self.search_seconds


def _number(pattern: str, text: str, kind: type = int) -> float:
    m = re.search(pattern, text)
    return kind(m.group(1)) if m else 0


def run_pan(
    defines: list[str],
    pml: Path | str | None = None,
    pml_text: str | None = None,
    timeout: float | None = None,
    memory_limit_mb: int | None = None,
    workdir: Path | None = None,
    optimize: str = "-O2",
) -> PanResult:
    """Verify pml (or pml_text) with these ``-D`` switches, exhaustively and without
    partial-order reduction. timeout bounds pan's run; memory_limit_mb is pan's MEMLIM;
    optimize is gcc's level (tests on tiny models use -O0: it compiles 4x faster)."""
    with tempfile.TemporaryDirectory(prefix="kvmsim-spin-", dir=workdir) as tmp:
        d = Path(tmp)
        text = pml_text if pml_text is not None else Path(pml or PML).read_text()
        (d / "model.pml").write_text(text)
        start = time.perf_counter()
        _run(["spin", "-a", *defines, "model.pml"], d)
        cflags = [optimize, "-DNOREDUCE", "-DSAFETY"]
        if memory_limit_mb is not None:
            cflags.append(f"-DMEMLIM={memory_limit_mb}")
        _run(["gcc", *cflags, "-o", "pan", "pan.c"], d)
        compiled = time.perf_counter()
        try:
            proc = subprocess.run(
                ["./pan", "-m1000000", "-c0"],
                cwd=d,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            out = proc.stdout + proc.stderr
            timed_out = False
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else ""
            timed_out = True
        searched = time.perf_counter()
    return parse_pan(
        out, timed_out, timeout, memory_limit_mb, compiled - start, searched - compiled
    )


def parse_pan(
    out: str,
    timed_out: bool,
    timeout: float | None,
    memory_limit_mb: int | None,
    compile_seconds: float,
    search_seconds: float,
) -> PanResult:
    """pan's figures from its output. pan prints big counts in %g form (9.6e+07), and a
    search stopped by -DMEMLIM says "reached -DMEMLIM bound" before its usual summary."""
    out_of_memory = "out of memory" in out or "reached -DMEMLIM bound" in out
    complete = not timed_out and not out_of_memory and "states, stored" in out
    note = ""
    if timed_out:
        note = f"pan stopped after {timeout:.0f} s"
    elif out_of_memory:
        note = f"pan ran out of memory (MEMLIM {memory_limit_mb} MB)"
    elif "max search depth too small" in out:
        complete, note = False, "search depth too small"
    count = r"(\d+(?:\.\d+)?(?:e\+\d+)?)"
    return PanResult(
        states=int(_number(count + r" states, stored", out, float)),
        transitions=int(_number(count + r" transitions", out, float)),
        errors=int(_number(r"errors: (\d+)", out)),
        compile_seconds=compile_seconds,
        search_seconds=search_seconds,
        memory_mb=float(_number(r"([\d.]+)\s+total actual memory usage", out, float)),
        complete=complete,
        note=note,
        output=out,
    )


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
