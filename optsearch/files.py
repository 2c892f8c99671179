"""Files the CLI and a run write: written whole or not at all."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optsearch.dsl import OptsearchError


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename: never a half-written file."""
    if path.is_dir():
        raise OptsearchError(f"{path} is a directory; -o takes the .py file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OptsearchError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # what a plain open() would have given
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OptsearchError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["write_atomically"]
