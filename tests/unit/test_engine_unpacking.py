"""Python workers of the same code share one unpacked copy of it (sandbox.engine_patches.unpacking)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine_patches.unpacking import SHARED_FOLDER, sharing_python_code, sharing_zipfile_module


class FakeWorker:
    """What the engine's Worker._spawn does with a zip: an empty code folder, then extractall into it."""

    def __init__(self, runtime: str, folder: Path, archive: Path) -> None:
        self.config = {"Runtime": runtime}
        self.code_dir = folder / "code"
        self.archive = archive

    def spawn(self) -> None:
        os.makedirs(self.code_dir)
        with sharing_zipfile_module().ZipFile(str(self.archive)) as zf:
            zf.extractall(str(self.code_dir))


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "engine-tmp"))
    (tmp_path / "engine-tmp").mkdir()
    path = tmp_path / "code.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("app.py", "VALUE = 1\n")
        zf.writestr("pkg/__init__.py", "")
    return path


def spawn(worker: FakeWorker) -> Any:
    return sharing_python_code(FakeWorker.spawn)(worker)


def test_python_workers_of_one_zip_link_to_one_unpacked_copy(tmp_path: Path, archive: Path) -> None:
    # GIVEN two Python workers of the same code
    workers = [FakeWorker("python3.11", tmp_path / name, archive) for name in ("w1", "w2")]
    # WHEN both spawn
    for worker in workers:
        spawn(worker)
    # THEN each code folder links to the same copy in the engine's temp folder, with the zip's files
    targets = {os.path.realpath(worker.code_dir) for worker in workers}
    assert all(worker.code_dir.is_symlink() for worker in workers) and len(targets) == 1
    (shared,) = targets
    assert Path(shared).parent == tmp_path / "engine-tmp" / SHARED_FOLDER
    assert sorted(p.relative_to(shared).as_posix() for p in Path(shared).rglob("*.py")) == [
        "app.py",
        "pkg/__init__.py",
    ]


def test_other_runtimes_and_the_engine_s_other_unzipping_keep_a_copy_of_their_own(
    tmp_path: Path, archive: Path
) -> None:
    node = FakeWorker("nodejs20.x", tmp_path / "n1", archive)
    spawn(node)
    assert not node.code_dir.is_symlink() and (node.code_dir / "app.py").is_file()
    # AND outside a Python worker's spawn the engine's ZipFile is the real one
    plain = tmp_path / "plain"
    with sharing_zipfile_module().ZipFile(str(archive)) as zf:
        zf.extractall(str(plain))
    assert not plain.is_symlink() and (plain / "app.py").is_file()
    assert not (tmp_path / "engine-tmp" / SHARED_FOLDER).exists()
