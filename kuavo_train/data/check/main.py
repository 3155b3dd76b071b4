"""`kuavo-train check-data`: parse the command line (dataset dirs or a curriculum config), run the checks, print the
reports."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

from kuavo_train.data.check.dataset import check_dataset, cross_check
from kuavo_train.data.check.report import DatasetReport, format_report
from kuavo_train.data.constants import CAMERA_PREFIX
from kuavo_train.data.source import read_source_info
from kuavo_train.errors import KuavoError


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one-line error + exit 2 through the usual KuavoError path
        raise KuavoError(f"{message} (see `kuavo-train check-data --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog="kuavo-train check-data",
        description="Inspect LeRobot dataset dirs (Kuavo v2.1 exports or v3.0) and report problems. "
        "Exit status: 0 no problems, 1 problems found, 2 a dataset could not be checked at all.",
    )
    p.add_argument(
        "roots",
        nargs="*",
        metavar="ROOT",
        help="dataset dir(s) to check one by one; KEY=VALUE items are config overrides, "
        "and with them (or --config-name) "
        "every task of the curriculum is checked against its task file (e.g. data.roots.weighing=/data/t2)",
    )
    p.add_argument("--state-dim", type=_positive_int, help="expected observation.state size")
    p.add_argument("--action-dim", type=_positive_int, help="expected action size")
    p.add_argument(
        "--cameras", type=_camera_list, help="required cameras, comma separated (e.g. head_cam_h,wrist_cam_l)"
    )
    p.add_argument("--fps", type=_positive_float, help="expected fps")
    p.add_argument("--instruction", help="training instruction to compare with the dataset's task strings")
    p.add_argument(
        "--config-name",
        help="check every task of this config (default smolvla_sequential_base when overrides are given)",
    )
    p.add_argument("--config-path", help="config dir (default configs/policy)")
    return p


def check_data_main(argv: Sequence[str] | None = None) -> int:
    """`kuavo-train check-data ...`; 0 = no problems, 1 = problems, 2 = a dataset could not be checked."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    jobs = _jobs(args)
    reports, errors = _run_jobs(jobs)
    cross_check(reports)
    for report in reports:
        print(format_report(report))
        print()
    problems = sum(len(r.problems) for r in reports)
    summary = f"checked {len(reports)} dataset(s): {problems} problem(s)"
    if errors:
        summary += f", {errors} could not be checked (see the error lines)"
    print(summary)
    if errors:
        return 2
    return 1 if problems else 0


def _run_jobs(jobs: list[tuple[str | None, str, dict[str, Any]]]) -> tuple[list[DatasetReport], int]:
    """(labelled report of each dataset that could be checked, number that could not); errors go to stderr."""
    reports, errors = [], 0
    for label, root, expect in jobs:
        try:
            report = check_dataset(root, **expect)
        except KuavoError as exc:
            errors += 1
            print(f"error: {f'{label}: ' if label else ''}{exc}", file=sys.stderr)
            continue
        report.label = label
        reports.append(report)
    return reports, errors


def _jobs(args) -> list[tuple[str | None, str, dict[str, Any]]]:
    cli_expect = {
        "expected_state_dim": args.state_dim,
        "expected_action_dim": args.action_dim,
        "expected_cameras": args.cameras,
        "expected_fps": args.fps,
        "instruction": args.instruction,
    }
    jobs: list[tuple[str | None, str, dict[str, Any]]] = []
    overrides = [r for r in args.roots if "=" in r]
    roots = [r for r in args.roots if "=" not in r]
    if args.config_name or args.config_path or overrides:
        jobs.extend(_config_jobs(args, overrides, cli_expect))
    elif not roots:
        raise KuavoError("give at least one dataset dir (kuavo-train check-data ROOT [ROOT ...]) or --config-name NAME")
    jobs.extend((None, root, dict(cli_expect)) for root in roots)
    return jobs


def _config_jobs(args, overrides: list[str], cli_expect: dict[str, Any]):
    from kuavo_train.config.args import parse_config_args
    from kuavo_train.config.load import load_config

    flags = [f"--config-name={args.config_name}"] if args.config_name else []
    flags += [f"--config-path={args.config_path}"] if args.config_path else []
    parsed = parse_config_args([*flags, *overrides])
    cfg = load_config(parsed.config_dir, parsed.config_name, parsed.overrides)
    recorded = _recorded_cameras(cfg)
    jobs = []
    for task in cfg.tasks:
        own = recorded.get(task.id)
        # As in training: a camera this task lacks but another task's data has is masked for it, not a problem.
        masked = (
            []
            if own is None
            else [
                c
                for c in task.data.cameras
                if c not in own and any(c in cams for t, cams in recorded.items() if t != task.id)
            ]
        )
        expect = {
            "expected_state_dim": task.data.state_dim,
            "expected_action_dim": task.data.action_dim,
            "expected_cameras": [c for c in task.data.cameras if c not in masked],
            "expected_fps": None,
            "instruction": task.language_instruction,
        }
        expect.update({k: v for k, v in cli_expect.items() if v is not None})  # explicit flags win
        label = f"task {task.id} ({task.name})" + (f"; trained with {', '.join(masked)} masked" if masked else "")
        jobs.append((label, task.data.root, expect))
    return jobs


def _recorded_cameras(cfg) -> dict[int, set[str]]:
    """Camera keys in each task's dataset (from meta/info.json); a dataset that cannot be read is left out
    (its own check reports why)."""
    cameras = {}
    for task in cfg.tasks:
        try:
            cameras[task.id] = set(read_source_info(task.data.root).camera_keys)
        except KuavoError:
            continue
    return cameras


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def _camera_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected camera names separated by commas")
    return [n if n.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + n for n in names]
