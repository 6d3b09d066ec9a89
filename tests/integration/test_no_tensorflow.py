"""Ray workers started by fedtflite never import TensorFlow.

Flower's Ray backend imports ``tensorflow`` when it is installed (for GPU memory
growth); :func:`fedtflite.orchestrator.simulate.start_ray` installs a worker set-up hook
that blocks it. The control runs the same import without the hook, so the test
would fail if the import did not pull TensorFlow in.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from fedtflite.orchestrator.simulate import start_ray

pytestmark = pytest.mark.integration

FLOWER_RAY_BACKEND = "flwr.server.superlink.fleet.vce.backend.raybackend"


def test_flower_ray_backend_imports_tensorflow_without_the_hook() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: nothing to block")
    code = (
        f"import sys, {FLOWER_RAY_BACKEND}; "
        "print(sys.modules.get('tensorflow') is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_ray_workers_do_not_import_tensorflow() -> None:
    import ray

    def probe() -> tuple[bool, bool]:
        import importlib
        import sys

        blocked = "tensorflow" in sys.modules and sys.modules["tensorflow"] is None
        importlib.import_module(FLOWER_RAY_BACKEND)
        return blocked, sys.modules.get("tensorflow") is not None

    started = start_ray("")
    try:
        blocked, loaded = ray.get(ray.remote(num_cpus=1)(probe).remote(), timeout=120)
    finally:
        if started:
            ray.shutdown()

    assert blocked
    assert not loaded
