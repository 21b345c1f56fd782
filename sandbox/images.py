"""The MiniStack engine image: its name, tagged by a hash of what goes into it.

The image runs MiniStack on its own Python with the handlers' requirements and the sandbox's
engine patches (see docker/ministack/Dockerfile). Its tag changes exactly when one of those inputs
does, so compose builds a new image after a change and reuses the old one otherwise.

``python -m sandbox.images`` prints the tag (for CI and ``make engine-image``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MINISTACK_REPOSITORY = "saga-sandbox-ministack"
MINISTACK_DOCKERFILE = Path("docker/ministack/Dockerfile")
HANDLER_REQUIREMENTS = Path("services/requirements.txt")
# The engine patches, a package the Dockerfile copies in whole.
ENGINE_PATCHES_PACKAGE = Path("sandbox/engine_patches")
PROJECT_DIR = Path(__file__).resolve().parent.parent


def ministack_image_inputs(project_dir: Path) -> tuple[Path, ...]:
    """Everything the Dockerfile copies in, relative to the project (the build context).

    Every module of the engine patches counts, sorted, so adding, removing or changing any of
    them changes the tag.
    """
    modules = sorted(
        path.relative_to(project_dir) for path in (project_dir / ENGINE_PATCHES_PACKAGE).glob("*.py")
    )
    return (MINISTACK_DOCKERFILE, Path("docker/ministack/requirements.txt"), HANDLER_REQUIREMENTS, *modules)


MINISTACK_IMAGE_INPUTS = ministack_image_inputs(PROJECT_DIR)


def ministack_image_hash(project_dir: Path) -> str:
    """A short hash of the files the MiniStack image is built from."""
    digest = hashlib.sha256()
    for relative in ministack_image_inputs(project_dir):
        digest.update(relative.as_posix().encode() + b"\0" + (project_dir / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def ministack_image(project_dir: Path) -> str:
    """The MiniStack engine image to run: SANDBOX_MINISTACK_IMAGE, else the content-hash tag."""
    override = os.environ.get("SANDBOX_MINISTACK_IMAGE")
    if override:
        return override
    from sandbox.engine_patches import PINNED_ENGINE_VERSION  # the patches load only to name the image

    return f"{MINISTACK_REPOSITORY}:{PINNED_ENGINE_VERSION}-{ministack_image_hash(project_dir)}"


def main() -> None:
    print(ministack_image(PROJECT_DIR))


if __name__ == "__main__":
    main()
