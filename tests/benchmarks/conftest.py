"""The sim benchmark needs MuJoCo/Meta-World (the `sim` extra) and OSMesa; CI demands them (KUAVO_REQUIRE_SIM=1)."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os

import pytest


def _sim_missing() -> str | None:
    for module in ("metaworld", "mujoco"):
        if importlib.util.find_spec(module) is None:
            return f"python package '{module}' missing: pip install -e '.[sim]'"
    if ctypes.util.find_library("OSMesa") is None:
        return "libOSMesa missing: bash scripts/install_sim_system_deps.sh (Debian: apt-get install libosmesa6)"
    return None


@pytest.fixture(scope="session")
def sim_available() -> None:
    reason = _sim_missing()
    if reason is None:
        return
    if os.environ.get("KUAVO_REQUIRE_SIM") == "1":
        pytest.fail(f"KUAVO_REQUIRE_SIM=1 but the simulator cannot run: {reason}")
    pytest.skip(reason)
