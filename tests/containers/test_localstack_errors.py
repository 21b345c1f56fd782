"""LocalStack's failure modes through the real compose path, with stand-in images.

The real LocalStack image cannot be pulled on every machine (CI has no registry), so two small
stand-ins, built on the engine image (it has Python), play the parts this sandbox must explain:
an image that exits for want of an auth token (exit 55, LocalStack's message), and an edition
whose health lacks a service the stack needs (Step Functions, as when SERVICES leaves it out).
Each runs under compose.yaml's `localstack` profile via LOCALSTACK_VERSION.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import compose, find_free_port
from tests.containers.conftest import unavailable
from tests.integration.test_cli import SANDBOX
from tests.unit.test_compose import COMMUNITY_HEALTH, LICENSE_LOG

pytestmark = pytest.mark.containers

UNLICENSED = f"import sys; print({LICENSE_LOG!r}, flush=True); sys.exit(55)"
WITHOUT_STEP_FUNCTIONS = {
    **COMMUNITY_HEALTH,
    "services": {
        name: state for name, state in COMMUNITY_HEALTH["services"].items() if name != "stepfunctions"
    },
}
LIMITED_EDITION = (
    "import http.server, json, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1: stop at once on `compose down`\n"
    f"BODY = json.dumps({WITHOUT_STEP_FUNCTIONS!r}).encode()\n"
    "class Health(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Type', 'application/json'); self.end_headers()\n"
    "        self.wfile.write(BODY)\n"
    "http.server.HTTPServer(('0.0.0.0', 4566), Health).serve_forever()\n"
)


@pytest.fixture(scope="module")
def stand_in(docker_client: Any, engine_image: str) -> Iterator[Any]:
    try:
        compose.find_compose()
    except Exception as error:
        unavailable(f"no Docker Compose: {error}")
    tags: list[str] = []

    def build(name: str, program: str) -> str:
        tag = f"sandbox-test-{name}-{os.getpid()}"
        dockerfile = f'FROM {engine_image}\nENTRYPOINT ["python3", "-c", {json.dumps(program)}]\n'
        docker_client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=f"localstack/localstack:{tag}", rm=True
        )
        tags.append(f"localstack/localstack:{tag}")
        return tag

    yield build
    for tag in tags:
        docker_client.images.remove(tag, force=True)


def up_localstack(version: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SANDBOX_PORT": str(find_free_port()),
        "SANDBOX_STATE_DIR": str(state_dir),
        "LOCALSTACK_VERSION": version,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [SANDBOX, "up", "--engine", "localstack"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_nothing_left(state_dir: Path) -> None:
    assert not (state_dir / "engine.json").exists()
    project = compose.project_name(state_dir)
    listed = compose.run_command(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]
    )
    assert listed.stdout.split() == []


def test_a_localstack_that_exits_for_want_of_a_token_is_one_line_with_the_fix(
    stand_in: Any, tmp_path: Path
) -> None:
    # GIVEN a LocalStack tag that exits without an auth token
    version = stand_in("unlicensed", UNLICENSED)
    # WHEN `sandbox up --engine localstack` starts it
    result = up_localstack(version, tmp_path)
    # THEN one error line says what happened, and the hint names the token, the pin and the embedded engine
    assert result.returncode == 1
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert f"LocalStack (localstack/localstack:{version}) exited: this image needs an auth token" in line
    hint = next(text for text in result.stderr.splitlines() if text.startswith("hint:"))
    assert (
        "LOCALSTACK_AUTH_TOKEN" in hint
        and "LOCALSTACK_VERSION=4.14.0" in hint
        and "--engine embedded" in hint
    )
    assert "Traceback" not in result.stderr
    # AND nothing of it is left behind
    assert_nothing_left(tmp_path)


def test_a_localstack_without_a_service_the_stack_needs_is_refused_before_deploying(
    stand_in: Any, tmp_path: Path
) -> None:
    version = stand_in("limited-edition", LIMITED_EDITION)
    result = up_localstack(version, tmp_path)
    assert result.returncode == 1
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert "does not offer stepfunctions" in line
    assert "deploying" not in result.stderr
    assert_nothing_left(tmp_path)
