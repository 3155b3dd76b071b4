"""The throughput benchmark: one run prints the side-by-side tables (same samples on both sides, ratios of
the two sides' figures); the GPU memory estimate's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.smolvlm2_architecture import IMAGE_SEQ_LEN, write_architecture
from benchmarks.throughput import CARDS_MIB, ESTIMATE_OVERHEAD_MIB, gpu_memory_estimate
from tests.conftest import REPO_ROOT

STEPS, BATCH = 2, 8
TABLE_COLUMNS = [
    "recipe",
    "workers",
    "trainer",
    "levers",
    "samples",
    "samples/s",
    "step ms (mean / median)",
    "data wait ms",
    "data-wait share",
    "peak RSS MiB (+added)",
    "worker PSS MiB",
    "cache build",
    "set-up s",
    "warm-up s",
]
RATIO_COLUMNS = [
    "recipe",
    "workers",
    "levers",
    "samples/s ours/lerobot",
    "step time ours/lerobot",
    "peak memory ours/lerobot",
]


def markdown_table(text: str, first_column: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and row cells of the markdown table whose header starts with ``| first_column |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    rows = []
    for line in lines[start + 2 :]:  # after the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return cells(lines[start]), rows


def test_one_run_prints_ours_and_lerobot_side_by_side(tmp_path):
    out = tmp_path / "throughput.json"
    command = [
        sys.executable,
        "benchmarks/throughput.py",
        "--steps",
        str(STEPS),
        "--warmup",
        "1",
        "--num-workers",
        "0",
        "2",
        "--batch-size",
        str(BATCH),
        "--episodes",
        "4",
        "--data-dir",
        str(tmp_path / "data"),
        "--json",
        str(out),
    ]
    proc = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    runs = {(r["trainer"], r["num_workers"]): r for r in payload["results"]}
    assert set(runs) == {("ours", 0), ("lerobot", 0), ("ours", 2), ("lerobot", 2)}
    for run in runs.values():
        # Every measured step trained a full batch (an epoch here is far longer than 1 warm-up + 2 steps) ...
        assert (run["steps"], run["batch_size"], run["samples"]) == (STEPS, BATCH, STEPS * BATCH), run
        # ... and samples/s is those samples over the measured time.
        seconds = run["step_ms_mean"] * run["steps"] / 1000
        assert run["samples_per_s"] == pytest.approx(run["samples"] / seconds, rel=1e-9)
        assert 0 <= run["data_wait_share"] <= 1 and len(run["step_ms"]) == STEPS
        assert run["final_loss"] is not None
    for workers in (0, 2):  # the two sides trained the same model on as many samples
        ours, ler = runs["ours", workers], runs["lerobot", workers]
        assert ours["samples"] == ler["samples"]
        trainable = payload["memory_model"]["parameters_trainable"]
        assert ours["trainable_parameters"] == ler["trainable_parameters"] == trainable
    assert all(runs[trainer, 2]["workers_pss_mib"] > 0 for trainer in ("ours", "lerobot"))

    header, rows = markdown_table(proc.stdout, "recipe | workers | trainer")
    assert header == TABLE_COLUMNS
    assert [(int(r[1]), r[2]) for r in rows] == [(r["num_workers"], r["trainer"]) for r in payload["results"]]
    for row in rows:
        run = runs[row[2], int(row[1])]
        assert len(row) == len(TABLE_COLUMNS) and row[0] == "seed"
        assert row[3] == ("all" if row[2] == "ours" else "-")  # the product's defaults: SDPA and the feature cache
        assert int(row[4]) == run["samples"] and row[5] == f"{run['samples_per_s']:.2f}"
        assert row[6] == f"{run['step_ms_mean']:.1f} / {run['step_ms_median']:.1f}"
    ours_builds = [r for r in payload["results"] if r["trainer"] == "ours"]
    assert ours_builds[0]["cache_frames_built"] > 0  # the first run embedded the frames, the next reused them
    assert all(r["cache_frames_built"] == 0 for r in ours_builds[1:])

    header, rows = markdown_table(proc.stdout, "recipe | workers | levers")
    assert header == RATIO_COLUMNS
    assert [int(r[1]) for r in rows] == [0, 2] == [r["num_workers"] for r in payload["ratios"]]
    for row, saved in zip(rows, payload["ratios"], strict=True):
        ours, ler = runs["ours", int(row[1])], runs["lerobot", int(row[1])]
        samples_ratio = ours["samples_per_s"] / ler["samples_per_s"]
        step_ratio = ours["step_ms_mean"] / ler["step_ms_mean"]
        memory_ratio = ours["peak_rss_mib"] / ler["peak_rss_mib"]
        assert [float(c) for c in row[3:]] == pytest.approx([samples_ratio, step_ratio, memory_ratio], abs=5e-4)
        assert [saved["samples_per_s"], saved["step_time"], saved["peak_memory"]] == pytest.approx(
            [samples_ratio, step_ratio, memory_ratio], rel=1e-9
        )
        assert saved["samples"] == {"ours": ours["samples"], "lerobot": ler["samples"]}
    model = payload["memory_model"]
    assert model["parameters_trainable"] < model["parameters_total"]
    assert model["gpu_estimate"]["activation_mib_per_sample"] > 0


def test_gpu_estimate_of_the_full_size_model():
    """The figures docs/performance.md quotes, from the counts the full-size --memory-only run printed."""
    mib = 2**20
    total, trainable = 450_046_176, 180_503_712
    model = {
        "parameters_total": total,
        "parameters_trainable": trainable,
        "static_bytes_fp32_adamw": 4 * total + (4 + 8) * trainable,  # as memory_model reports it (3782.5 MiB)
        "activation_bytes_per_sample_ours": 343.89 * mib,
        "activation_bytes_per_sample_lerobot": 343.89 * mib,
    }
    estimate = gpu_memory_estimate(model)
    assert round(estimate["static_mib"]) == 4127
    assert round(estimate["peak_mib_by_batch"][16] / 1024, 1) == 10.4
    assert estimate["largest_batch"] == {"16 GB": 31, "24 GB": 54}
    for card, batch in estimate["largest_batch"].items():
        peak = lambda b: estimate["static_mib"] + b * 343.89 + ESTIMATE_OVERHEAD_MIB  # noqa: E731
        assert peak(batch) <= CARDS_MIB[card] < peak(batch + 1), card


def test_offline_architecture_has_smolvlm2_500m_sizes(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    path = write_architecture(tmp_path / "arch", ["Pick up the part"])
    config = AutoConfig.from_pretrained(path)
    text, vision = config.text_config, config.vision_config
    assert (
        text.vocab_size,
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.num_key_value_heads,
    ) == (49280, 960, 32, 15, 5)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (768, 12, 512, 16)
    assert config.scale_factor == 4 and not text.tie_word_embeddings
    assert AutoProcessor.from_pretrained(path).image_seq_len == IMAGE_SEQ_LEN == 64


def test_attention_benchmark_prints_both_kinds_with_the_same_loss(demo_env):
    backbone = next(o for o in demo_env.overrides if o.startswith("policy.vlm_model_name=")).partition("=")[2]
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "attention.py"),
            "--vlm-model-name",
            backbone,
            "--config-name",
            "smolvla_sequential_demo",
            "--image-hw",
            "24",
            "32",
            "--steps",
            "1",
            "--warmup",
            "0",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] in (["eager"], ["sdpa"])
    }
    assert set(rows) == {"eager", "sdpa"}
    assert float(rows["sdpa"][3]) == pytest.approx(float(rows["eager"][3]), rel=1e-5)  # same loss
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows.values())
