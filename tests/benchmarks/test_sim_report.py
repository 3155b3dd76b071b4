"""docs/benchmarks.md writer: tables from a summary, heatmaps, and hand-written notes kept across reruns; the
header's model, device and machine as run.py records them from the config and this machine."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks.sim import run as sim_run
from benchmarks.sim.report import NOTES_MARKER, final_table, write_docs
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config
from kuavo_train.device import DeviceChoice

TINY_CPU = {
    "machine": "Intel(R) Xeon(R) Processor, 2 CPUs",
    "model": {
        "vlm": "tiny_smolvlm",
        "vlm_weights": "random init",
        "pretrained_policy": None,
        "vlm_layers": 4,
        "frozen_vlm_layers": 2,
        "image_size": [64, 64],
        "parameters": 561_312,
    },
    "device": {"device": "cpu", "reason": "cpu: as configured", "precision": "fp32"},
}
FULL_GPU = {
    "machine": "AMD EPYC 9654 96-Core Processor, 16 CPUs, GPU NVIDIA H200",
    "model": {
        "vlm": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "vlm_weights": "pretrained",
        "pretrained_policy": "lerobot/smolvla_base",
        "vlm_layers": 16,
        "frozen_vlm_layers": 8,
        "image_size": [512, 512],
        "parameters": 450_046_212,
    },
    "device": {"device": "cuda", "reason": "auto: NVIDIA H200", "precision": "bf16 autocast (fp32 weights)"},
}


def _summary(success_after_4: float, setup: dict = TINY_CPU) -> dict:
    rows = {stage: {task: (1.0 if task == stage else 0.0) for task in range(1, 5)} for stage in range(1, 5)}
    rows[4] = {1: success_after_4, 2: 0.5, 3: 0.25, 4: 1.0}
    losses = {str(stage): {str(task): 0.1 * task for task in range(1, 5)} for stage in range(1, 5)}
    result = {
        "strategy": "default",
        "success_matrix": rows,
        "average_success": sum(rows[4].values()) / 4,
        "bwt_success": -0.5,
        "optimizer_steps": 900,
        "forgetting_success": {1: 0.25, 2: 0.5, 3: 0.75},
        "loss_matrix": losses,
        "seconds": {"train": 1.0, "closed_loop": 2.0},
    }
    return {
        "command": "benchmarks/sim/run.py --docs",
        **setup,
        "seconds": {"demos": 1.0, "total": 60.0},
        "budget": {
            "episodes": 4,
            "validation_episodes": 1,
            "epochs": 1,
            "steps_per_epoch": 2,
            "batch_size": 8,
            "eval_episodes": 1,
        },
        "strategies": {"default": result},
    }


def test_final_table_shows_the_last_row_average_and_bwt():
    table = final_table(_summary(0.75))
    assert (
        "| default | 75% | 50% | 25% | 100% | 62% | -50 pts | reach 25, push 50, pick_place 75 pts | 0.250 | 900 |"
        in table
    )


def test_rewriting_the_docs_keeps_the_notes_below_the_marker(tmp_path):
    page = write_docs(_summary(0.75), tmp_path)
    assert (tmp_path / "img" / "sim_success_matrices.png").stat().st_size > 5000
    page.write_text(page.read_text() + "\n## Findings\nwritten by a person\n")
    write_docs(_summary(0.25), tmp_path)
    text = page.read_text()
    assert "| default | 25% |" in text and "| default | 75% |" not in text
    assert text.count(NOTES_MARKER) == 1 and text.endswith("## Findings\nwritten by a person\n")


def _header(page: Path) -> str:
    text = page.read_text()
    return text[text.index("Command:") : text.index("Budget:")]


def test_header_names_the_recorded_model_device_and_machine(tmp_path):
    header = _header(write_docs(_summary(0.75, FULL_GPU), tmp_path))
    assert (
        "Model: VLM backbone `HuggingFaceTB/SmolVLM2-500M-Video-Instruct` (pretrained, 16 layers, 8 frozen), "
        "starting from `lerobot/smolvla_base`, 512x512 images, 450.05 M parameters."
    ) in header
    assert (
        "Device: cuda (bf16 autocast (fp32 weights)) on AMD EPYC 9654 96-Core Processor, 16 CPUs, GPU NVIDIA H200."
    ) in header
    assert "tiny" not in header and "random init" not in header

    header = _header(write_docs(_summary(0.75, TINY_CPU), tmp_path))
    assert (
        "Model: VLM backbone `tiny_smolvlm` (random init, 4 layers, 2 frozen), 64x64 images, 0.56 M parameters."
    ) in header
    assert "Device: cpu (fp32) on Intel(R) Xeon(R) Processor, 2 CPUs." in header
    assert "GPU" not in header and "bf16" not in header


def _config(tmp_path: Path, full: bool):
    args = sim_run.parse_args(["--full"] if full else [])
    overrides = sim_run.config_overrides(tmp_path, sim_run.budget_of(args), full)
    return load_config(DEFAULT_CONFIG_DIR, sim_run.CONFIG_NAME, overrides)


def test_model_is_described_from_the_config(tmp_path):
    tiny = _config(tmp_path, full=False)
    Path(tiny.policy.vlm_model_name).mkdir()  # built by run.py before the model is described
    assert sim_run.model_description(tiny) == {
        "vlm": "tiny_smolvlm",
        "vlm_weights": "random init",
        "pretrained_policy": None,
        "vlm_layers": 4,
        "frozen_vlm_layers": 2,
        "image_size": [64, 64],
        "parameters": None,
    }
    assert sim_run.model_description(_config(tmp_path, full=True)) == {
        "vlm": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "vlm_weights": "pretrained",
        "pretrained_policy": "lerobot/smolvla_base",
        "vlm_layers": 16,
        "frozen_vlm_layers": 8,
        "image_size": [512, 512],
        "parameters": None,
    }


def test_device_and_machine_are_the_ones_used(tmp_path, monkeypatch):
    cpu = DeviceChoice(torch.device("cpu"), "cpu: as configured")
    assert sim_run.device_description(_config(tmp_path, full=False), cpu) == {
        "device": "cpu",
        "reason": "cpu: as configured",
        "precision": "fp32",
    }
    assert (
        sim_run.device_description(_config(tmp_path, full=True), cpu)["precision"]
        == "fp32 (bf16 autocast is CUDA-only)"
    )  # --full asks for bf16, which this device cannot do
    machine = sim_run.machine_description(cpu)
    assert machine == f"{sim_run.cpu_name()}, {os.cpu_count()} CPUs" and "GPU" not in machine

    gpu = DeviceChoice(torch.device("cuda", 1), "cuda:1: NVIDIA H200")
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: asked.append(device) or "NVIDIA H200")
    assert sim_run.device_description(_config(tmp_path, full=True), gpu)["precision"] == "bf16 autocast (fp32 weights)"
    assert sim_run.machine_description(gpu).endswith(", GPU NVIDIA H200") and asked == [torch.device("cuda", 1)]


def test_parameters_are_counted_from_the_checkpoint(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"a.weight": torch.zeros(3, 4), "b.bias": torch.zeros(5), "c": torch.zeros(2, 3, 7)},
        str(tmp_path / "model.safetensors"),
    )
    assert sim_run.checkpoint_parameters(tmp_path) == 12 + 5 + 42


def test_run_records_the_setup_it_ran_with(tmp_path, monkeypatch, capsys):
    """run.py's main, its training and closed loop stubbed: sim_results.json and the page get the config's model,
    the device it resolved and this machine."""
    import json

    from safetensors.torch import save_file

    from kuavo_train.layout import MODEL_FILE, RunPaths

    devices = []

    def train_and_evaluate(name, out, overrides, budget, device):
        devices.append(device)
        best = RunPaths(out / name).stage(sim_run.sim_tasks.SIM_TASKS[0].dirname).best
        best.mkdir(parents=True)
        save_file({"w": torch.zeros(1000, 561), "b": torch.zeros(312)}, str(best / MODEL_FILE))
        return {**_summary(0.75)["strategies"]["default"], "strategy": name}

    def build_assets(cfg, budget, full):
        Path(cfg.policy.vlm_model_name).mkdir(parents=True)  # the tiny backbone's dir

    monkeypatch.setattr(sim_run, "build_assets", build_assets)
    monkeypatch.setattr(sim_run, "evaluate_strategy", train_and_evaluate)
    out, docs = tmp_path / "sim", tmp_path / "docs"
    assert sim_run.main(["--smoke", "--strategy", "naive", "--out", str(out), "--docs", str(docs)]) == 0

    summary = json.loads((out / sim_run.RESULTS_FILE).read_text())
    assert summary["model"] == {
        "vlm": "tiny_smolvlm",
        "vlm_weights": "random init",
        "pretrained_policy": None,
        "vlm_layers": 4,
        "frozen_vlm_layers": 2,
        "image_size": [64, 64],
        "parameters": 561_312,
    }
    assert summary["device"] == {"device": "cpu", "reason": "cpu: as configured", "precision": "fp32"}
    assert devices == ["cpu"]  # the closed loop runs where training ran
    assert summary["machine"] == f"{sim_run.cpu_name()}, {os.cpu_count()} CPUs"
    header = _header(docs / "benchmarks.md")
    assert (
        "Model: VLM backbone `tiny_smolvlm` (random init, 4 layers, 2 frozen), 64x64 images, 0.56 M parameters."
        in header
        and f"Device: cpu (fp32) on {summary['machine']}." in header
    )
