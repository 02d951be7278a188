"""Which files a table's path cells may name: by default only files inside the table's own
folder (``data.allow_outside: false``), or inside one of the extra folders in ``data.roots``.

A table is data, and data from elsewhere must not make polymodal open ``/etc/passwd`` or
``../../secret.png``. Paths are resolved (symlinks too) before the check, so neither ``..`` nor a
link leads out. A cell longer than any real path is refused before any resolution is attempted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer cell cannot name a file


class PathRefused(ValueError):
    """A path cell that may not be opened; the message says why and how to allow it."""


@dataclass(frozen=True)
class FileAccess:
    """``allow_outside``: any path may be read; else only inside the table's folder or ``roots``
    (absolute folders)."""

    allow_outside: bool = False
    roots: tuple[str, ...] = ()

    @classmethod
    def of(cls, allow_outside: bool, roots: list[str] | tuple[str, ...] = ()) -> FileAccess:
        """Roots made absolute (relative ones against the working directory) and resolved."""
        return cls(allow_outside, tuple(os.path.realpath(os.path.expanduser(r)) for r in roots))

    def check(self, path: str, base_dir: Path, cache: dict[str, str] | None = None) -> str:
        """``path`` (absolute) if it may be read, else :class:`PathRefused`. ``cache`` keeps
        the resolved folders of one column's cells (they share a few folders)."""
        if self.allow_outside:
            return path
        cache = {} if cache is None else cache
        real = _real(path, cache)
        base = cache.get("\0base") or cache.setdefault("\0base", os.path.realpath(base_dir))
        for folder in (base, *self.roots):
            if real == folder or real.startswith(folder.rstrip(os.sep) + os.sep):
                return real
        where = f"the table's folder {base_dir}" + (
            f" and data.roots {list(self.roots)}" if self.roots else ""
        )
        raise PathRefused(
            f"{path} is outside {where}; set data.allow_outside: true, or add its folder to "
            "data.roots, to read it"
        )

    def state_dict(self) -> dict[str, object]:
        return {"allow_outside": self.allow_outside, "roots": list(self.roots)}


ANYWHERE = FileAccess(allow_outside=True)  # direct calls outside a pipeline (search queries)


def _real(path: str, cache: dict[str, str]) -> str:
    """``os.path.realpath(path)``, resolving the folder part once per ``cache``: a column's
    thousands of cells then cost one ``lstat`` each instead of one per path component."""
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        return os.path.realpath(path)
    if head not in cache:
        cache[head] = os.path.realpath(head)
    joined = os.path.join(cache[head], tail)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def cell_path(
    text: str, base_dir: Path, access: FileAccess, cache: dict[str, str] | None = None
) -> Path:
    """The file a path cell names: ``~`` expanded, relative paths against ``base_dir``, checked
    against ``access``; over-long cells are refused first (resolving them costs time)."""
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(
            f"a path of {len(text):,} characters; expected a file path of at most "
            f"{MAX_PATH_CHARS} characters"
        )
    if "\0" in text:
        raise PathRefused("a path with a NUL character; expected a file path")
    path = os.path.join(base_dir, os.path.expanduser(text))  # an absolute text stays as is
    return Path(access.check(path, base_dir, cache))


__all__ = ["ANYWHERE", "MAX_PATH_CHARS", "FileAccess", "PathRefused", "cell_path"]
