"""The sim benchmark needs MuJoCo/Meta-World (the `sim` extra) and OSMesa; CI demands them
(KUAVO_REQUIRE_SYSTEM_DEPS=1)."""

from __future__ import annotations

import ctypes.util
import importlib.util

import pytest

from tests.conftest import skip_unless_required


def _sim_missing() -> str | None:
    for module in ("metaworld", "mujoco"):
        if importlib.util.find_spec(module) is None:
            return f"python package '{module}' missing: pip install -e '.[sim]'"
    if ctypes.util.find_library("OSMesa") is None:
        return "libOSMesa missing: bash scripts/install_system_deps.sh (Debian: apt-get install libosmesa6)"
    return None


@pytest.fixture(scope="session")
def sim_available() -> None:
    skip_unless_required(_sim_missing())
