"""`kuavo-train demo` / `make demo`: build the demo assets, then run the whole curriculum on them."""

from __future__ import annotations

import time
from pathlib import Path

from kuavo_train.cli import REPO_ROOT, _split_config_args
from kuavo_train.config.load import load_config
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.demo.assets import ensure_demo_assets
from kuavo_train.evaluation.instruction_following import evaluate_main
from kuavo_train.reporting.report import write_report

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
    if code != 0:
        return code
    final = Path(cfg.training.output_directory) / cfg.tasks[-1].dirname / "best"
    print("\nLanguage switching of the final model:")
    evaluate_main([str(final), f"--config-name={config_name}", "--max-frames=200", *overrides])
    report = write_report(Path(cfg.training.output_directory))
    print(f"report: {report} (+ PNGs beside it)")
    print(f"demo finished in {time.perf_counter() - started:.0f}s")
    return 0
