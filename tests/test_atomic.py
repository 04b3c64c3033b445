"""Every file kvmsim writes is written atomically: a failed write leaves the old file or none."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from kvmsim import atomic
from kvmsim.cli import main

SRC = Path(atomic.__file__).resolve().parent


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_text_replaces_the_file_with_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("old\n")
    atomic.write_text(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()
    assert os.listdir(tmp_path) == ["report.md"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, exc: BaseException
) -> None:
    path = tmp_path / "t.json"
    atomic.write_json(path, {"a": 1})

    def fail(*_a: object) -> None:
        raise exc

    monkeypatch.setattr(os, where, fail)
    with pytest.raises(type(exc)):
        atomic.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["t.json"]


def test_a_failed_first_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        atomic.write_text(tmp_path / "new.html", "<html>" * 1000)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "argv, name",
    [
        (["demo", "broken-lock", "--quiet", "--html"], "r.html"),
        (["demo", "broken-lock", "--quiet", "--trace-out"], "t.json"),
        (["demo", "broken-lock", "--quiet", "--junit"], "j.xml"),
    ],
)
def test_the_command_line_writes_through_the_helper(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    name: str,
) -> None:
    """A write that fails at the last moment: exit 2, one line, the old file intact."""
    path = tmp_path / name
    path.write_text("old")

    def fail(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    code = main([*argv, str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {path}: No space left on device" in err
    assert err.count("kvmsim: error:") == 1
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == [name]


def test_no_module_writes_files_another_way() -> None:
    """Every write in src/kvmsim goes through kvmsim.atomic (open for writing, write_text,
    write_bytes, json.dump to a file are found here)."""
    pattern = re.compile(
        r"\.write_text\(|\.write_bytes\(|json\.dump\(|open\([^)]*['\"][wax]b?\+?['\"]"
    )
    offenders = []
    for file in sorted(SRC.rglob("*.py")):
        if file.name == "atomic.py":
            continue
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and "atomic." not in line:
                offenders.append(f"{file.relative_to(SRC)}:{n}: {line.strip()}")
    assert offenders == []


def test_write_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.bin"
    atomic.write_bytes(path, b"\x00\x01old")
    assert path.read_bytes() == b"\x00\x01old"

    def fail(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic.write_bytes(path, b"new")
    assert path.read_bytes() == b"\x00\x01old"
    assert os.listdir(tmp_path) == ["state.bin"]
