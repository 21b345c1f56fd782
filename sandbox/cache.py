"""The user's cache (Settings.cache_dir): folders filled once, then only read.

Dependency installs, the Lambda runtimes' SDKs: each is filled in a staging folder beside its
place and renamed into it with a ``.complete`` marker, so a crashed fill never counts as done
and two sandboxes filling the same folder at once end with one whole copy.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = ".complete"


def is_filled(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def fill_once(folder: Path, fill: Callable[[Path], str]) -> Path:
    """``folder``, filled by ``fill(staging)`` unless a whole copy is already there.

    ``fill`` returns the marker's text (what the folder was made from). An error in ``fill``
    leaves nothing behind; when another process finished first, its copy is kept.
    """
    if is_filled(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / COMPLETE_MARKER).write_text(fill(staging))
        if folder.exists() and not is_filled(folder):
            shutil.rmtree(folder)  # left by a fill that was not atomic (an older sandbox)
        try:
            staging.rename(folder)
        except OSError:
            if not is_filled(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
