"""``python -m sandbox.engine_patches`` (``python3 -m engine_patches`` in the image): patch, then start the engine."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
