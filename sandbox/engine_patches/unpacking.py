"""Python workers of the same code share one unpacked copy of it, and the bytecode compiled there.

The engine unpacks a function's zip into a folder of each worker's own at every cold start, as
a Lambda execution environment does. With a function's dependencies in its package (what `sam
build` makes) that cost a cold start 0.3 s to unpack a few hundred files, and the modules'
compilation again (0.5 s with Powertools and pydantic), for every worker: each function of a
saga, each concurrent worker, each successor of a reaped one. Here a Python worker's code folder
is a link to one copy per zip (by its content's hash) in the engine's temp folder, unpacked once;
the bytecode the first worker writes there serves the next. The files a handler sees are the
same. Other runtimes keep a copy of their own: Node.js resolves a module's packages from its
real path, which must stay inside the worker's folder.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import shutil
import tempfile
import threading
import types
import zipfile
from collections.abc import Callable
from typing import Any

SHARED_FOLDER = "sandbox-code"  # in the engine's temp folder, which `sandbox down` removes
_is_sharing: contextvars.ContextVar[bool] = contextvars.ContextVar("is_sharing", default=False)
# Workers that spawn at once (a burst) wait for the first one's unpacking instead of each doing it.
_unpacking = threading.Lock()


def content_digest(path: str) -> str:
    """A short hash of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def unpack_shared(archive: zipfile.ZipFile, folder: str, root: str) -> None:
    """Make ``folder`` (empty or missing) a link to the one unpacked copy of ``archive`` under ``root``."""
    shared = os.path.join(root, content_digest(str(archive.filename)))
    with _unpacking:
        if not os.path.isdir(shared):
            os.makedirs(root, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".unpacking-", dir=root)
            zipfile.ZipFile.extractall(archive, staging)
            try:
                os.rename(staging, shared)
            except OSError:  # another engine process unpacked it first: use theirs
                shutil.rmtree(staging, ignore_errors=True)
    if os.path.isdir(folder) and not os.path.islink(folder):
        os.rmdir(folder)
    os.symlink(shared, folder)


class SharingZipFile(zipfile.ZipFile):
    """The engine's ZipFile; while a Python worker spawns, extractall links to a shared copy."""

    def extractall(self, path: Any = None, members: Any = None, pwd: Any = None) -> None:
        if not _is_sharing.get() or path is None or members is not None or not self.filename:
            super().extractall(path, members, pwd)
            return
        unpack_shared(self, os.fspath(path), os.path.join(tempfile.gettempdir(), SHARED_FOLDER))


def sharing_zipfile_module() -> types.SimpleNamespace:
    """The ``zipfile`` the engine's worker module sees: the real one, with SharingZipFile."""
    return types.SimpleNamespace(**{**vars(zipfile), "ZipFile": SharingZipFile})


def sharing_python_code(spawn: Callable[..., Any]) -> Callable[..., Any]:
    """The engine's ``Worker._spawn``: a Python worker's code (and layers) unpacked once, shared."""

    def spawn_sharing(worker: Any, *args: Any, **kwargs: Any) -> Any:
        token = _is_sharing.set(str(worker.config.get("Runtime", "")).startswith("python"))
        try:
            return spawn(worker, *args, **kwargs)
        finally:
            _is_sharing.reset(token)

    return spawn_sharing
