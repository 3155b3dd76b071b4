"""`kuavo-train demo` / `make demo`: build the demo assets, then run the whole curriculum on them."""

from __future__ import annotations

import time
from pathlib import Path

from kuavo_train.config.args import parse_config_args
from kuavo_train.config.load import load_config
from kuavo_train.curriculum.paths import stage_paths
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.demo.assets import ensure_demo_assets
from kuavo_train.evaluation.instruction_following import evaluate_main
from kuavo_train.reporting.report import write_report

DEMO_CONFIG = "smolvla_sequential_demo"
WHAT_THE_DEMO_SHOWS = """
What this demo shows: every part of the pipeline end to end (ingest, replay, held-out validation,
forgetting analysis, checkpoints, criteria, loss matrix, language switching, report). Its model is a
tiny random-init backbone trained for minutes on CPU, so failed success criteria and forgetting
verdicts here are expected and say nothing about the real model (README: "What the demo shows")."""


def run_demo(argv: list[str]) -> int:
    args = parse_config_args([f"--config-name={DEMO_CONFIG}", *argv])
    config_dir, config_name, overrides = args.config_dir, args.config_name, args.overrides
    cfg = load_config(config_dir, config_name, overrides)
    started = time.perf_counter()
    ensure_demo_assets(cfg)
    print(f"demo assets ready in {time.perf_counter() - started:.1f}s")
    code = run_all(config_dir, config_name, overrides)
    if code != 0:
        return code
    final = stage_paths(cfg, cfg.tasks[-1]).best
    print("\nLanguage switching of the final model:")
    evaluate_main([str(final), "--max-frames=200"])
    report = write_report(Path(cfg.training.output_directory))
    print(f"report: {report} (+ PNGs beside it)")
    print(f"demo finished in {time.perf_counter() - started:.0f}s")
    print(WHAT_THE_DEMO_SHOWS)
    return 0
