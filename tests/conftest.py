"""Shared pytest fixtures.

* ``sim_cache_dir``: where Verilator models are cached for this session:
  ``$ACCEL_CACHE_DIR`` if set, else ``<repo>/build/sim-cache`` (kept between runs,
  so a second ``pytest`` reuses the builds; ``make clean`` removes it).
* ``build_model(cfg, waves=False, generate=None) -> BuiltModel``: the session's
  memoised :func:`sim.build.build_cocotb_model`, so tests that need the same
  configuration share one model (and processes share it through the cache's lock).

The repository root is put on ``sys.path`` (pyproject's ``pythonpath`` does the same)
so ``import hw, sim`` and cocotb modules such as ``tests.sim.cocotb_counter`` work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sim.build import BuiltModel, build_cocotb_model  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def sim_cache_dir() -> Path:
    """Session-wide Verilator model cache directory."""
    env = os.environ.get("ACCEL_CACHE_DIR")
    path = Path(env).expanduser() if env else REPO_ROOT / "build" / "sim-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def build_model(sim_cache_dir: Path) -> Callable[..., BuiltModel]:
    """Factory ``build_model(cfg, waves=False, generate=None)`` returning a cached BuiltModel."""
    built: dict[tuple, BuiltModel] = {}

    def build(cfg, waves: bool = False, generate: Callable | None = None) -> BuiltModel:
        key = (cfg, waves, generate)
        if key not in built:
            built[key] = build_cocotb_model(cfg, waves=waves, cache_dir=sim_cache_dir, generate=generate)
        return built[key]

    return build
