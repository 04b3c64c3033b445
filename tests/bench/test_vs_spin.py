"""bench/vs_spin.py: arguments, columns, and one small side-by-side run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import vs_spin  # noqa: E402
from spin_run import missing_tools, parse_pan  # noqa: E402

LAST = "ratio kvmsim/spin at 2 vCPUs x 2 ops: "


@pytest.mark.parametrize("configs", ["2y1", "2x", "9x1", "1x0"])
def test_bad_configurations_exit_2(configs: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert vs_spin.main(["--configs", configs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vs_spin: bad argument:") and len(err.splitlines()) == 1


def test_columns_take_options_and_model_switches() -> None:
    col = vs_spin.parse_column("sym:max_states=10,model.any_order_kicks=True,mode=dfs")
    assert col.name == "sym"
    assert col.options == {"max_states": 10, "mode": "dfs"}
    assert col.model == {"any_order_kicks": True}
    with pytest.raises(ValueError, match="not key=value"):
        vs_spin.parse_column("x:nonsense")


def test_kvmsim_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert vs_spin.main(["--configs", "1x1", "--no-spin", "--timeout", "60"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["1x1", "kvmsim", "1,314"] for line in out)
    assert out[-1] == LAST + "n/a (--no-spin)"


def test_bounded_run_is_reported_unfinished(capsys: pytest.CaptureFixture[str]) -> None:
    assert vs_spin.main(["--configs", "1x1", "--no-spin", "--max-states", "100"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " kvmsim " in line)
    assert "unfinished: bounded (100 states)" in row


@pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))
def test_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert vs_spin.main(["--configs", "1x1", "--timeout", "120"]) == 0
    out = capsys.readouterr().out.splitlines()
    spin = next(line for line in out if line.startswith("1x1    spin"))
    kvmsim = next(line for line in out if line.startswith("1x1    kvmsim"))
    assert "1,325" in spin and "holds" in spin
    assert "1,314" in kvmsim and " yes " in kvmsim
    assert out[-1] == LAST + "not measured (add 2x2 to --configs)"


MEMLIM_STOP = """pan: reached -DMEMLIM bound
	8.38861e+09 bytes used
	102400 bytes more needed
	8.38861e+09 bytes limit
State-vector 68 byte, depth reached 97, errors: 0
 96073388 states, stored
1.6408212e+08 states, matched
2.6015551e+08 transitions (= stored+matched)
 7999.902	total actual memory usage
"""


def test_pan_stopped_by_its_memory_limit_is_incomplete() -> None:
    """pan prints big counts in %g form and says "reached -DMEMLIM bound" when it stops for
    memory: that is no verdict, and the counts are read whole."""
    got = parse_pan(MEMLIM_STOP, False, 60.0, 8000, 2.0, 400.0)
    assert not got.complete and "out of memory" in got.note
    assert (got.states, got.transitions) == (96_073_388, 260_155_510)
    done = parse_pan(
        MEMLIM_STOP.replace("pan: reached -DMEMLIM bound", ""), False, 60.0, None, 2, 3
    )
    assert done.complete and done.errors == 0
