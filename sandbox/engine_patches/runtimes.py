"""Lambda workers started by the runtime's own launcher: what the function would see on AWS.

The engine starts every Python worker on its own interpreter, so a handler imports whatever the
engine's environment holds. The sandbox prepares, per Lambda runtime, an executable
``$SANDBOX_RUNTIMES_DIR/<runtime>/launch`` that starts the worker isolated (see
``sandbox.runtimes``); the worker script itself stays the engine's, patched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

# Where the sandbox put the runtimes' launchers; an engine without it (the container engine)
# starts workers its own way.
RUNTIMES_ENV = "SANDBOX_RUNTIMES_DIR"
LAUNCH_FILE = "launch"


def runtime_launcher(runtime: str, environ: Mapping[str, str]) -> str | None:
    """The executable launcher prepared for ``runtime``, or None when there is none."""
    root = environ.get(RUNTIMES_ENV, "")
    # A runtime name is one path segment ("python3.12"); anything else is not ours to look up.
    if not root or not runtime or os.sep in runtime or runtime.startswith("."):
        return None
    launcher = os.path.join(root, runtime, LAUNCH_FILE)
    return launcher if os.path.isfile(launcher) and os.access(launcher, os.X_OK) else None


def with_runtime_launchers(
    detect: Callable[[str], tuple[str, str]], environ: Mapping[str, str] = os.environ
) -> Callable[[str], tuple[str, str]]:
    """The engine's ``_detect_runtime_binary``, answering a runtime's launcher when it has one.

    Checked at every spawn (one stat), so a runtime prepared after the engine started is used
    by the next cold start.
    """

    def detect_with_launcher(runtime: str) -> tuple[str, str]:
        binary, worker_script = detect(runtime)
        if binary:
            launcher = runtime_launcher(runtime, environ)
            if launcher is not None:
                return launcher, worker_script
        return binary, worker_script

    return detect_with_launcher
