"""`kuavo-train report <output_dir>`: a Markdown report with pictures of one curriculum run.

Two steps: `kuavo_train.reporting.read.read_run` reads the run dir into a `RunData` (curriculum_results.json, each
stage's training_results.json and TensorBoard events, instruction_matrix.json when present; no torch model, so any
machine, also while later stages are still training), then `kuavo_train.reporting.render` turns that data into
report.md and its pictures. See docs/report.md for how to read the report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from kuavo_train.errors import KuavoError
from kuavo_train.layout import REPORT_DIR, REPORT_FILE
from kuavo_train.reporting.read import RunData, read_run
from kuavo_train.reporting.render import build_markdown, draw_pictures, is_report_file


def write_report(run_root: Path, out_dir: Path | None = None) -> Path:
    """Read the run ``run_root`` and write its ``report.md`` and PNGs to ``out_dir`` (default ``<run_root>/report``);
    returns report.md's path."""
    run = read_run(run_root)
    return publish_report(run, Path(out_dir).expanduser() if out_dir is not None else run.run_root / REPORT_DIR)


def publish_report(run: RunData, out_dir: Path) -> Path:
    """Render ``run`` into ``out_dir``; returns report.md's path.

    Everything is drawn into a temporary directory first; each file then replaces the old one atomically
    (pictures first, report.md last), and pictures of an older report that no longer apply are removed.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KuavoError(f"cannot create report directory {out_dir}: {exc.strerror or exc}") from exc
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        images = draw_pictures(run, tmp)
        (tmp / REPORT_FILE).write_text(build_markdown(run, images), encoding="utf-8")
        written = [*images, REPORT_FILE]
        for name in written:
            os.replace(tmp / name, out_dir / name)
        for stale in out_dir.iterdir():
            if stale.is_file() and is_report_file(stale.name) and stale.name not in written:
                stale.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / REPORT_FILE


def report_main(argv: list[str] | None = None) -> int:
    """`kuavo-train report`; a `KuavoError` propagates to `kuavo_train.errors.guarded` (one `error:` line, exit 2)."""
    from kuavo_train.recorded import run_root_of

    parser = argparse.ArgumentParser(
        prog="kuavo-train report",
        description="Write a Markdown report with pictures (loss matrix, curves, criteria, forgetting, timings) "
        "for a curriculum run.",
    )
    parser.add_argument(
        "output_dir",
        type=Path,
        help="the run's training.output_directory (e.g. outputs/demo), or a stage or checkpoint dir in it",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default OUTPUT_DIR/report)")
    args = parser.parse_args(argv)
    path = write_report(run_root_of(args.output_dir), args.out)
    print(f"Report: {path}")
    print("Pictures: " + ", ".join(sorted(p.name for p in path.parent.glob("*.png") if is_report_file(p.name))))
    return 0


if __name__ == "__main__":
    from kuavo_train.errors import guarded

    raise SystemExit(guarded(lambda: report_main(sys.argv[1:])))
