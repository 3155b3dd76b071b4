"""The throughput benchmark: one run prints the side-by-side table; the GPU memory estimate's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.smolvlm2_architecture import IMAGE_SEQ_LEN, write_architecture
from benchmarks.throughput import CARDS_MIB, ESTIMATE_OVERHEAD_MIB, gpu_memory_estimate
from tests.conftest import REPO_ROOT


def test_one_run_prints_ours_and_lerobot_side_by_side(tmp_path):
    out = tmp_path / "throughput.json"
    command = [sys.executable, "benchmarks/throughput.py", "--steps", "2", "--warmup", "1", "--num-workers", "0", "2",
               "--episodes", "4", "--data-dir", str(tmp_path / "data"), "--json", str(out)]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| workers | samples/s ours/lerobot |" in proc.stdout
    payload = json.loads(out.read_text())
    runs = {(r["trainer"], r["num_workers"]) for r in payload["results"]}
    assert runs == {("ours", 0), ("lerobot", 0), ("ours", 2), ("lerobot", 2)}
    for result in payload["results"]:
        assert result["samples_per_s"] > 0 and 0 <= result["data_wait_share"] <= 1
        assert result["final_loss"] is not None
    workers = {r["trainer"]: r["workers_pss_mib"] for r in payload["results"] if r["num_workers"] == 2}
    assert all(pss and pss > 0 for pss in workers.values()), workers
    model = payload["memory_model"]
    assert model["parameters_trainable"] < model["parameters_total"]
    assert model["gpu_estimate"]["activation_mib_per_sample"] > 0


def test_gpu_estimate_of_the_full_size_model():
    """The figures docs/performance.md quotes, from the counts the full-size --memory-only run printed."""
    mib = 2**20
    total, trainable = 450_046_176, 180_503_712
    model = {"parameters_total": total, "parameters_trainable": trainable,
             "static_bytes_fp32_adamw": 4 * total + (4 + 8) * trainable,  # as memory_model reports it (3782.5 MiB)
             "activation_bytes_per_sample_ours": 343.89 * mib, "activation_bytes_per_sample_lerobot": 343.89 * mib}
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
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        49280, 960, 32, 15, 5)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (768, 12, 512, 16)
    assert config.scale_factor == 4 and not text.tie_word_embeddings
    assert AutoProcessor.from_pretrained(path).image_seq_len == IMAGE_SEQ_LEN == 64
