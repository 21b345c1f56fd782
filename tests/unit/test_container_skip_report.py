"""Without Docker, the container tests' skip report is one short line per reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_without_a_docker_daemon_every_container_test_is_skipped_in_one_short_line(tmp_path: Path) -> None:
    # GIVEN no Docker daemon behind DOCKER_HOST, and container tests not required
    env = {key: value for key, value in os.environ.items() if key != "SANDBOX_REQUIRE_CONTAINERS"}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    # WHEN the container tests run
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/containers", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    # THEN all are skipped, reported in one line that says why in a few words
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, result.stdout
    (line,) = skipped
    assert line.startswith("SKIPPED [") and "tests/containers/conftest.py: no Docker daemon:" in line
    assert f"unix://{tmp_path}/no-docker.sock" in line
    assert "Exception" not in line and "tests/integration" not in line
