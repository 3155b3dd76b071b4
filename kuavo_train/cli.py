"""Command line: `kuavo-train <command>` (also `python -m kuavo_train <command>`).

Commands:
  train      one stage (same as kuavo_train/train_smolvla_sequential.py)
  run-all    every stage of the curriculum in order, skipping complete ones
  plan       print the plan of every stage and exit
  check-data inspect dataset dirs and report problems
  evaluate   instruction x task action-error matrix and latency of a checkpoint
  report     report.md + PNGs (loss matrix, curves, criteria) of an output dir
  demo       build the tiny backbone + synthetic data and run the whole demo curriculum
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kuavo_train.errors import KuavoError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _split_config_args(argv: list[str], relative_to: Path) -> tuple[Path, str, list[str]]:
    """Parse Hydra-style ``--config-path``/``--config-name``; the rest are overrides."""
    config_path, config_name, overrides = None, "smolvla_sequential_base", []
    args = list(argv)
    while args:
        item = args.pop(0)
        for flag in ("--config-path", "--config-name", "-cp", "-cn"):
            if item == flag:
                if not args:
                    raise KuavoError(f"{flag} needs a value")
                item = f"{flag}={args.pop(0)}"
        if item.startswith(("--config-path=", "-cp=")):
            config_path = item.split("=", 1)[1]
        elif item.startswith(("--config-name=", "-cn=")):
            config_name = item.split("=", 1)[1]
        elif item.startswith("-"):
            raise KuavoError(f"unknown option '{item}'; settings are Hydra overrides like training.resume=true")
        else:
            overrides.append(item)
    if config_path is None:
        config_dir = REPO_ROOT / "configs" / "policy"
    else:
        path = Path(config_path).expanduser()
        config_dir = path if path.is_absolute() else (relative_to / path)
    return config_dir.resolve(), config_name.removesuffix(".yaml"), overrides


def run_train_command(argv: list[str], relative_to: Path) -> int:
    """The seed command: train the stage named by ``task=``."""
    return _guarded(lambda: _train(argv, relative_to))


def _train(argv: list[str], relative_to: Path) -> int:
    from kuavo_train.config.load import load_config
    from kuavo_train.curriculum.stage import run_stage

    config_dir, config_name, overrides = _split_config_args(argv, relative_to)
    cfg = load_config(config_dir, config_name, overrides)
    result = run_stage(cfg)
    if result.status == "interrupted":
        return 130
    return 1 if (cfg.training.strict_criteria and not result.criteria_passed) else 0


def _run_all(argv: list[str]) -> int:
    from kuavo_train.curriculum.run_all import run_all

    config_dir, config_name, overrides = _split_config_args(argv, REPO_ROOT / "kuavo_train")
    return run_all(config_dir, config_name, overrides)


def _plan(argv: list[str]) -> int:
    return _run_all([*argv, "training.dry_run=true"])


def _check_data(argv: list[str]) -> int:
    from kuavo_train.data.check import check_data_main

    return check_data_main(argv)


def _report(argv: list[str]) -> int:
    from kuavo_train.reporting.report import report_main

    return report_main(argv)


def _evaluate(argv: list[str]) -> int:
    from kuavo_train.evaluation.instruction_following import evaluate_main

    return evaluate_main(argv)


def _demo(argv: list[str]) -> int:
    from kuavo_train.demo.run import run_demo

    return run_demo(argv)


COMMANDS = {"train": None, "run-all": _run_all, "plan": _plan, "check-data": _check_data, "evaluate": _evaluate,
            "report": _report, "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        return run_train_command(rest, relative_to=REPO_ROOT / "kuavo_train")
    return _guarded(lambda: COMMANDS[command](rest))


def _guarded(action) -> int:
    """User errors print one line and exit 2; Ctrl-C exits 130."""
    try:
        return action()
    except KuavoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
