"""benchmarks/gpu_check.sh in its CPU dry mode: every lever of both recipes against lerobot, the FLOPs/MFU
table, and the stage comparison (here CPU against CPU, which must agree exactly)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO_ROOT


def test_dry_mode_runs_every_part(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run(
        # Two of the four levers keep the suite short; every lever is a config setting the throughput test's
        # product-default run ("all") and tests/curriculum/test_feature_cache.py exercise.
        [
            "bash",
            "benchmarks/gpu_check.sh",
            *("--device", "cpu", "--tiny", "--levers", "none", "all", "--out", str(summary_path)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    (run,) = summary["throughput"]  # one batch size in the dry mode
    measured = {(r["recipe"], r["trainer"], r["levers"]) for r in run["results"]}
    levers = {("ours", lever) for lever in ("none", "all")} | {("lerobot", "-")}
    assert measured == {(recipe, *side) for recipe in ("expert_only", "seed") for side in levers}
    assert all(r["flops_per_step"] > 0 and r["achieved_tflops"] > 0 for r in run["results"])
    ratios = {(r["recipe"], r["levers"]) for r in run["ratios"]}
    assert ratios == {(recipe, lever) for recipe in ("expert_only", "seed") for lever in ("none", "all")}
    for recipe in ("expert_only", "seed"):  # each recipe's cache (another level) was embedded by its first run
        builds = [r["cache_frames_built"] for r in run["results"] if r["recipe"] == recipe and r["levers"] == "all"]
        assert builds[0] > 0
    assert "| recipe | workers | trainer | levers | GFLOP/step | TFLOP/s |" in proc.stdout
    stage = summary["stage"]
    assert stage["passed"] and stage["largest_relative_difference"] == pytest.approx(0.0, abs=1e-12)
    assert "2-step tiny stage, fp32: cpu" in proc.stdout and "PASS" in proc.stdout
