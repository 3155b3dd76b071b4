"""`kuavo-train demo` / `make demo`: build the demo assets, then run the whole curriculum on them."""

from __future__ import annotations

import time

from kuavo_train.cli import REPO_ROOT, _split_config_args
from kuavo_train.config.load import load_config
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.demo.assets import ensure_demo_assets

DEMO_CONFIG = "smolvla_sequential_demo"


def run_demo(argv: list[str]) -> int:
    config_dir, config_name, overrides = _split_config_args(
        [f"--config-name={DEMO_CONFIG}", *argv], relative_to=REPO_ROOT / "kuavo_train"
    )
    cfg = load_config(config_dir, config_name, overrides)
    started = time.perf_counter()
    ensure_demo_assets(cfg)
    print(f"demo assets ready in {time.perf_counter() - started:.1f}s")
    code = run_all(config_dir, config_name, overrides)
    print(f"demo finished in {time.perf_counter() - started:.0f}s")
    return code
