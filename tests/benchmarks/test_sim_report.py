"""docs/benchmarks.md writer: tables from a summary, heatmaps, and hand-written notes kept across reruns; the
header's model, device and machine as run.py records them from the config and this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmarks.sim import run as sim_run
from benchmarks.sim.report import NOTES_MARKER, difference_table, final_table, language_table, write_docs
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


def _cell(name: str, seed: int, final: list[float], bwt: float | None = -0.5) -> dict:
    """A sim_cell.json as run.py writes it (JSON: string keys); earlier rows solve only their own task."""
    last = len(final)
    rows = {str(s): {str(t): (1.0 if t == s else 0.0) for t in range(1, last + 1)} for s in range(1, last)}
    rows[str(last)] = {str(task): value for task, value in enumerate(final, start=1)}
    if name == "joint":
        rows = {str(last): rows[str(last)]}
    return {
        "strategy": name,
        "seed": seed,
        "success_matrix": rows,
        "average_success": sum(final) / 4,
        "bwt_success": None if name == "joint" else bwt,
        "forgetting_success": {} if name == "joint" else {"1": 0.25, "2": 0.5, "3": 0.75},
        "language": {
            "reach": {"success": final[0], "other_behaviour": 0.1, "episodes": 30},
            "pick_place": {"success": final[2], "other_behaviour": 0.2, "episodes": 30},
        }
        if last > 2
        else {},
        "loss_matrix": {str(s): {str(t): 0.1 * t for t in range(1, last + 1)} for s in rows},
        "optimizer_steps": 900,
        "seconds": {"train": 60.0 * (2 if name == "joint" else 1), "closed_loop": 2.0},
    }


def _summary(success_after_4: float, setup: dict = TINY_CPU) -> dict:
    finals = {0: [success_after_4, 0.5, 0.25, 1.0], 1: [success_after_4, 0.5, 0.25, 1.0]}
    return {
        "command": "benchmarks/sim/run.py --docs",
        **setup,
        "seconds": {"prepare": 1.0, "this_run": 60.0},
        "budget": {
            "tasks": ["reach", "faucet_open", "pick_place", "drawer_open"],
            "episodes": 4,
            "validation_episodes": 1,
            "epochs": 1,
            "steps_per_epoch": 2,
            "batch_size": 8,
            "eval_episodes": 10,
            "final_episodes": 30,
        },
        "base": {"checkpoint": "-", "zero_shot": None},
        "strategies": {
            "naive": {str(s): _cell("naive", s, [0.0, 0.0, 0.0, 1.0]) for s in finals},
            "seed_guide": {str(s): _cell("seed_guide", s, f) for s, f in finals.items()},
        },
    }


def test_final_table_shows_mean_and_interval_over_seeds():
    summary = _summary(0.75)
    # Seeds that disagree: reach 0.6 and 0.9 -> mean 75, t(1) 95% half-width 12.706 * 0.15 = 191 (clipped by nothing).
    summary["strategies"]["seed_guide"]["1"]["success_matrix"]["4"]["1"] = 0.6
    summary["strategies"]["seed_guide"]["0"]["success_matrix"]["4"]["1"] = 0.9
    table = final_table(summary)
    assert (
        "| seed_guide | 2 | 75 ± 191 | 50 ± 0 | 25 ± 0 | 100 ± 0 | 62 ± 0 | -50 ± 0 | 50 ± 0 | 900 | 1.0 | 1.00x |"
        in table
    )
    assert "| naive | 2 | 0 ± 0 | 0 ± 0 | 0 ± 0 | 100 ± 0 | 25 ± 0 |" in table


def test_differences_are_paired_by_seed_and_bold_only_when_the_interval_excludes_zero():
    summary = _summary(0.75)
    strategies = summary["strategies"]
    strategies["joint"] = {str(s): _cell("joint", s, [1.0, 1.0, 1.0, 1.0]) for s in range(3)}
    for name, averages in {"naive": [0.2, 0.3, 0.25], "seed_guide": [0.6, 0.8, 0.7]}.items():
        strategies[name] = {str(s): {**_cell(name, s, [0.5] * 4), "average_success": a} for s, a in enumerate(averages)}
    table = difference_table(summary)
    # seed_guide is the best sequential run: naive - seed_guide = -0.4, -0.5, -0.45 -> -45 ± 12 (t(2) 4.303 x sem 2.9)
    assert "| naive | **-75 ± 12** | **-45 ± 12** |" in table
    assert "| seed_guide | **-30 ± 25** | - |" in table
    strategies["naive"]["0"]["average_success"] = 0.9  # now the seeds disagree in sign: no longer called
    assert "| naive | -52 ± 90 | -22 ± 111 |" in difference_table(summary)


def test_language_table_shows_instructed_success_and_the_other_behaviour():
    table = language_table(_summary(0.75))
    assert "'reach' instructed: pick_place done instead (%)" in table
    assert "| seed_guide | 75 ± 0 | 10 ± 0 | 25 ± 0 | 20 ± 0 |" in table


def test_rewriting_the_docs_keeps_the_notes_below_the_marker(tmp_path):
    page = write_docs(_summary(0.75), tmp_path)
    assert (tmp_path / "img" / "sim_success_matrices.png").stat().st_size > 5000
    assert (tmp_path / "img" / "sim_final_success.png").stat().st_size > 5000
    page.write_text(page.read_text() + "\n## Findings\nwritten by a person\n")
    write_docs(_summary(0.25), tmp_path)
    text = page.read_text()
    assert "| seed_guide | 2 | 25 ± 0 |" in text and "| seed_guide | 2 | 75 ± 0 |" not in text
    assert text.count(NOTES_MARKER) == 1 and text.endswith("## Findings\nwritten by a person\n")


def _header(page: Path) -> str:
    text = page.read_text()
    return text[text.index("Command:") : text.index("Budget:")]


def test_header_names_the_recorded_model_device_and_machine(tmp_path):
    header = _header(write_docs(_summary(0.75, FULL_GPU), tmp_path))
    assert (
        "Model: VLM backbone `HuggingFaceTB/SmolVLM2-500M-Video-Instruct` (pretrained, 16 layers, 8 frozen), "
        "stage 1 starting from `lerobot/smolvla_base`, 512x512 images, 450.05 M parameters."
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
    overrides = sim_run.curriculum_overrides(tmp_path, sim_run.budget_of(args))
    extra = sim_run.FULL_OVERRIDES if full else [f"policy.vlm_model_name={tmp_path / 'tiny_smolvlm'}"]
    return load_config(DEFAULT_CONFIG_DIR, sim_run.CONFIG_NAME, [*overrides, *extra])


def test_model_is_described_from_the_config(tmp_path):
    tiny = _config(tmp_path, full=False)
    Path(tiny.policy.vlm_model_name).mkdir()  # built by run.py before the model is described
    assert sim_run.model_description(tiny) == {
        "vlm": "tiny_smolvlm",
        "vlm_weights": "random init",
        "pretrained_policy": None,
        "vlm_layers": 4,
        "frozen_vlm_layers": 0,
        "image_size": [64, 64],
        "parameters": None,
    }
    assert sim_run.model_description(_config(tmp_path, full=True)) == {
        "vlm": "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "vlm_weights": "pretrained",
        "pretrained_policy": "lerobot/smolvla_base",
        "vlm_layers": 16,
        "frozen_vlm_layers": 0,
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


def test_run_records_the_setup_it_ran_with(tmp_path, monkeypatch):
    """run.py's main, its preparation and cells stubbed: sim_results.json and the page get the config's model,
    the device it resolved and this machine; a rerun with other settings in the same --out is refused."""
    import json

    from safetensors.torch import save_file

    from kuavo_train.layout import MODEL_FILE, RunPaths

    devices = []

    def prepare(out, budget, full):
        backbone = out / "tiny_smolvlm"
        backbone.mkdir(parents=True)
        overrides = [*sim_run.curriculum_overrides(out, budget), f"policy.vlm_model_name={backbone}"]
        return overrides, {"checkpoint": "-", "zero_shot": None}

    def run_cell(name, seed, out, overrides, budget, device):
        devices.append(device)
        run_dir = out / name / f"seed{seed}"
        best = RunPaths(run_dir).stage(budget.tasks[-1].dirname).best
        best.mkdir(parents=True)
        save_file({"w": torch.zeros(1000, 561), "b": torch.zeros(312)}, str(best / MODEL_FILE))
        (run_dir / sim_run.CELL_FILE).write_text(json.dumps(_cell(name, seed, [0.5] * len(budget.tasks))))

    monkeypatch.setattr(sim_run, "prepare", prepare)
    monkeypatch.setattr(sim_run, "run_cell", run_cell)
    out, docs = tmp_path / "sim", tmp_path / "docs"
    assert sim_run.main(["--smoke", "--strategy", "naive", "--out", str(out), "--docs", str(docs)]) == 0

    summary = json.loads((out / sim_run.RESULTS_FILE).read_text())
    assert summary["model"]["vlm"] == "tiny_smolvlm" and summary["model"]["parameters"] == 561_312
    assert summary["device"] == {"device": "cpu", "reason": "cpu: as configured", "precision": "fp32"}
    assert devices == ["cpu"]  # the closed loop runs where training ran; --smoke is one seed
    assert list(summary["strategies"]) == ["naive"] and list(summary["strategies"]["naive"]) == ["0"]
    assert summary["machine"] == f"{sim_run.cpu_name()}, {os.cpu_count()} CPUs"
    header = _header(docs / "benchmarks.md")
    assert "0.56 M parameters." in header and f"Device: cpu (fp32) on {summary['machine']}." in header

    with pytest.raises(SystemExit, match="other settings"):
        sim_run.main(["--out", str(out)])


def test_the_sim_configs_and_the_simulator_name_the_same_tasks():
    from benchmarks.sim.pretrain import PRETRAIN_CONFIG, check_tasks_match
    from benchmarks.sim.tasks import PRETRAIN_TASKS, SIM_TASKS

    check_tasks_match(load_config(DEFAULT_CONFIG_DIR, sim_run.CONFIG_NAME), SIM_TASKS)
    check_tasks_match(load_config(DEFAULT_CONFIG_DIR, PRETRAIN_CONFIG), PRETRAIN_TASKS)
    with pytest.raises(SystemExit, match="keep them in sync"):
        check_tasks_match(load_config(DEFAULT_CONFIG_DIR, PRETRAIN_CONFIG), SIM_TASKS + PRETRAIN_TASKS[4:])
