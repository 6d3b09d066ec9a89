"""Ray worker set-up hook: keep TensorFlow out of client workers.

Flower's Ray backend imports ``tensorflow`` in every worker when it is installed
(to offer GPU memory growth), costing each worker ~2-3 s and ~500 MB. Clients
run LiteRT only, so the hook marks the module absent before Flower's import:
``import tensorflow`` then raises ``ModuleNotFoundError``, which Flower handles.
"""

from __future__ import annotations

import sys

__all__ = ["block_tensorflow"]


def block_tensorflow() -> None:
    """Make ``import tensorflow`` fail fast in this process."""
    sys.modules.setdefault("tensorflow", None)  # type: ignore[arg-type]
