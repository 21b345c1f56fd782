"""The SandboxError family: every failure the CLI reports as one readable line."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the sandbox reports to people; ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.details = details


class EngineError(SandboxError):
    """The local engine could not be started, reached or stopped."""


class EngineNotRunningError(EngineError):
    """No engine is running where the sandbox expects one."""


class DeployError(SandboxError):
    """The stack could not be packaged or deployed."""


class StackNotFoundError(DeployError):
    """The stack is not deployed on the engine."""


class OrderError(SandboxError):
    """The order API refused or failed a request."""


class WaitTimeoutError(SandboxError):
    """Something the sandbox waited for did not happen in time."""


class UsageError(SandboxError):
    """A command-line value the sandbox cannot use."""


class AwsCredentialsError(SandboxError):
    """The AWS credentials of a `--target aws` command are missing, unknown or refused."""


class DockerUnavailableError(EngineError):
    """Docker (the CLI, its daemon or compose) is missing where a container engine needs it."""


class ImagePullError(EngineError):
    """A container engine's image could not be pulled or built."""


class LocalStackLicenseError(EngineError):
    """LocalStack refused to run, or lacks a service the stack needs, without an auth token."""
