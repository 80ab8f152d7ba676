"""Writing files and folders safely: atomically, and with the permissions the user's umask asks for.

Temporary files from :mod:`tempfile` are private (0600, folders 0700); results renamed into
place from them would stay private, so others in the lab could not read shared results.
Everything Cerber writes gets the mode a plain ``open()`` or ``mkdir()`` would give.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_UMASK_LOCK = threading.Lock()


class FileProblem(Exception):
    """A file that cannot be used: the message names the file, what is wrong and the fix.

    Picklable as itself (``path``, ``problem`` and ``fix`` travel), so that a problem found on
    a cluster worker reaches the client as the same error."""

    def __init__(self, path: Path | str, problem: str, fix: str = ""):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}" + (f" {fix}" if fix else ""))

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.fix)


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (the lock keeps our own threads consistent)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def temporary_folder(beside: Path) -> Path:
    """A new empty folder next to ``beside`` (same file system, so it can be renamed into place),
    with the mode a plain ``mkdir`` gives."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", suffix=".tmp", dir=beside.parent))
    os.chmod(tmp, new_folder_mode())
    return tmp


def atomic_write(path: Path | str, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it into place
    (whatever ``write`` returns is ignored). A file it replaces keeps its mode; a new file
    gets the umask's."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)  # reopened by name: some writers (tifffile) want a named file
    try:
        os.chmod(tmp, mode)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
