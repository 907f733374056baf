"""Output paths and files: checked before any work starts, one file mode for everything scorekit writes, and
output folders that exist only when the command that made them succeeded.

- `check_output_file(path, flag)`: refuse (ValueError, one line) an output whose parent is a file, that is a
  directory, or whose folder cannot be written — before a long computation, without creating anything.
- `check_output_dir(path, flag)`: the same for an output folder.
- `output_mode()` / `set_output_mode(path)`: 0666 & ~umask, the mode `open(path, "w")` would give; atomic writes
  (temp file + rename) otherwise leave `mkstemp`'s 0600.
- `new_output_dir(path)`: a context manager that creates the folder (and missing parents) and removes what it
  created if the block raises.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

__all__ = ["check_output_file", "check_output_dir", "output_mode", "set_output_mode", "new_output_dir"]


def output_mode(directory: bool = False) -> int:
    """0666 & ~umask: the mode of a file made by a plain `open(path, "w")` (0777 & ~umask for a folder)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def set_output_mode(path: str | Path) -> None:
    """Give a file written through a temp file the same mode as any other output."""
    try:
        os.chmod(path, output_mode())
    except OSError:
        pass


def _first_existing(path: Path) -> tuple[Path, list[Path]]:
    """The deepest existing ancestor of `path` (or `path` itself) and the missing parts below it."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    return p, missing


def _check_parents(path: Path, flag: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    base, _ = _first_existing(parent)
    if not base.is_dir():
        raise ValueError(f"cannot write {flag} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {flag} {path}: folder {base} is not writable")


def check_output_file(path: str | Path, flag: str = "--out", suffix: str | None = None) -> Path:
    """Refuse an output file that cannot be written, creating nothing. `suffix` (e.g. ".npz") is required."""
    p = Path(path)
    if not str(path).strip():
        raise ValueError(f"{flag} needs a file name")
    if suffix is not None and p.suffix.lower() != suffix:
        raise ValueError(f"{flag} must end in {suffix}, got {path}")
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {p / ('out' + (suffix or '.json'))}")
    _check_parents(p, flag)
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"cannot write {flag} {path}: the file is read-only")
    return p


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse an output folder that is a file or cannot be made, creating nothing."""
    p = Path(path)
    if not str(path).strip():
        raise ValueError(f"{flag} needs a folder name")
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write {flag} {path}: folder is not writable")
        return p
    _check_parents(p, flag)
    return p


@contextmanager
def new_output_dir(path: str | Path, keep_if_files: bool = False):
    """Create `path` (and missing parents) for the block; if the block raises, remove the folders it created
    (an existing folder and its earlier content are left alone). With `keep_if_files`, a created folder that
    already holds files (e.g. resumable training checkpoints of a long job) is kept."""
    p = Path(path)
    _, missing = _first_existing(p)
    p.mkdir(parents=True, exist_ok=True)
    try:
        yield p
    except BaseException:
        top = missing[-1] if missing else None  # the top-most folder this call created
        if top is not None and not (keep_if_files and any(f.is_file() for f in top.rglob("*"))):
            shutil.rmtree(top, ignore_errors=True)
        raise
