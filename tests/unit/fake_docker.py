"""A stand-in for the docker and compose commands, for tests of the container engines without Docker."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from sandbox.engine import compose


class FakeDocker:
    """Answers docker and compose commands from a script; records every command."""

    def __init__(self, answers: dict[str, tuple[int, str]], executables: set[str]):
        self.answers = answers
        self.executables = executables
        self.commands: list[list[str]] = []
        self.envs: list[dict[str, str] | None] = []

    def run(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        self.envs.append(kwargs.get("env"))
        text = " ".join(command)
        for key, (code, output) in self.answers.items():
            if key in text:
                return subprocess.CompletedProcess(command, code, output, "" if code == 0 else output)
        return subprocess.CompletedProcess(command, 0, "", "")

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.executables else None


def docker_installer(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., FakeDocker]:
    """What a `fake_docker` fixture returns: install(answers, executables) puts a FakeDocker in place."""

    def install(answers: dict[str, tuple[int, str]], executables: set[str] | None = None) -> FakeDocker:
        fake = FakeDocker(answers, {"docker", "docker-compose"} if executables is None else executables)
        monkeypatch.setattr(compose, "run_command", fake.run)
        monkeypatch.setattr(compose, "find_executable", fake.which)
        return fake

    return install
