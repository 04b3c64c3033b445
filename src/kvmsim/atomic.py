"""Every file kvmsim writes goes through here, so a crash leaves the old file or the new one.

The text is written to a temporary file in the target's folder (a rename is atomic only
within one file system), flushed and fsynced, given the permissions a plain ``open()`` would
give (``mkstemp`` makes it 0600), then renamed over the target with ``os.replace``. On any
failure, ^C included, the temporary file is removed and the target is left untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text (UTF-8) to path atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write data to path atomically (a checkpoint, say)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if target.parent else "."
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(target.parent)


def write_json(path: str | os.PathLike[str], doc: Any) -> None:
    """Write doc as indented JSON (non-ASCII kept, unknown objects as their repr)."""
    write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, default=repr) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
