"""One-command GPU check: throughput per speed lever against plain lerobot, memory, data wait, MFU, and a
CUDA stage that must match the same stage on the CPU.

    bash benchmarks/gpu_check.sh                      # on a CUDA machine (no network needed)
    bash benchmarks/gpu_check.sh --device cpu --tiny  # the dry mode the test suite runs (minutes, CPU)

What it runs, each part printing its own table:

1. ``benchmarks/throughput.py`` at batch 16 and 64 (``--batch-sizes``), for both freezing recipes
   (lerobot's default ``expert_only`` and the ``seed``'s), every lever (none, sdpa, cache, all) and
   plain lerobot in the same process: samples/s, step time, data-wait share, peak CUDA memory, and
   with ``--flops`` the model FLOPs of a step (``torch.utils.flop_counter``), achieved TFLOP/s and MFU
   against the GPU's bf16 peak (``--peak-tflops``; known cards are looked up). Full size uses the
   offline SmolVLM2-500M architecture (``benchmarks/smolvlm2_architecture.py``, random weights).
2. A tiny demo stage trained ``--stage-steps`` optimizer steps (200) in fp32 on the device and on the
   CPU, from the same seed: its final training and validation losses must agree within
   ``--tolerance`` (relative; CUDA's TF32 matmuls and kernel order make them differ a little).

``--tiny`` swaps the full-size model for the demo's tiny backbone and small batches; ``--device cpu``
runs everything on the CPU (the stage is then compared with itself: a check of the script, not of a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def run(command: list[str], log: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    print("$ " + " ".join(command), flush=True)
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    print(proc.stdout[-20000:], end="", flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-5000:], file=sys.stderr, flush=True)
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}")
    if log is not None:
        log.write_text(proc.stdout)
    return proc


def throughput(args, work: Path) -> list[dict]:
    runs = []
    for batch in args.batch_sizes:
        out = work / f"throughput_b{batch}.json"
        command = [
            sys.executable,
            "benchmarks/throughput.py",
            "--device",
            args.device,
            "--batch-size",
            str(batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--num-workers",
            str(args.num_workers),
            "--recipe",
            *args.recipes,
            "--levers",
            *args.levers,
            "--episodes",
            str(args.episodes),
            "--episode-length",
            str(args.episode_length),
            "--data-dir",
            str(work / "data"),
            "--no-memory-model",
            "--flops",
            "--json",
            str(out),
        ]
        if args.peak_tflops:
            command += ["--peak-tflops", str(args.peak_tflops)]
        if not args.tiny:
            command += ["--full", "--vlm-model-name", str(architecture(work))]
        run(command)
        runs.append(json.loads(out.read_text()))
    return runs


def architecture(work: Path) -> Path:
    target = work / "smolvlm2_arch"
    if not (target / "config.json").is_file():
        run([sys.executable, "benchmarks/smolvlm2_architecture.py", str(target)])
    return target


def stage_on(device: str, args, work: Path) -> dict:
    """Train the tiny demo stage ``--stage-steps`` steps in fp32 on ``device``; its training results."""
    from benchmarks.throughput import demo_overrides

    output = work / f"stage_{device.replace(':', '_')}"
    # the demo config's own batch (8) and decoder choice (auto), as the throughput runs' data
    overrides = demo_overrides(work / "data", output, 1, 8, device, "auto")
    overrides += [
        "training.mixed_precision=no",
        "training.epochs_override=1",
        f"training.steps_per_epoch={args.stage_steps}",
        "training.num_workers=0",
    ]
    run([sys.executable, "-m", "kuavo_train", "train", "--config-name=smolvla_sequential_demo", *overrides])
    results = json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())
    return {
        "train_loss": results["train_loss_per_epoch"][-1],
        "validation_loss": results["validation_history"][-1]["losses"]["1"],
    }


def compare_stages(args, work: Path) -> dict:
    device_run, cpu_run = stage_on(args.device, args, work), stage_on("cpu", args, work)
    worst = max(abs(device_run[k] - cpu_run[k]) / max(abs(cpu_run[k]), 1e-12) for k in cpu_run)
    verdict = "PASS" if worst <= args.tolerance else "FAIL"
    print(
        f"\n{args.stage_steps}-step tiny stage, fp32: {args.device} {device_run} vs cpu {cpu_run}: "
        f"largest relative difference {worst:.2e} (tolerance {args.tolerance:g}) {verdict}"
    )
    return {
        "device": device_run,
        "cpu": cpu_run,
        "largest_relative_difference": worst,
        "passed": worst <= args.tolerance,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the demo's tiny backbone instead of the full-size model")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 16 64 (--tiny: 4)")
    p.add_argument("--recipes", nargs="+", default=["expert_only", "seed"])
    p.add_argument("--levers", nargs="+", default=["none", "sdpa", "cache", "all"])
    p.add_argument("--steps", type=int, default=None, help="measured steps per run (default 10, --tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per run (default 3, --tiny 1)")
    p.add_argument("--num-workers", type=int, default=None, help="loader workers (default 4 on CUDA, 0 on CPU)")
    p.add_argument("--episodes", type=int, default=None, help="synthetic episodes per task (default 4, --tiny 3)")
    p.add_argument("--episode-length", type=int, default=None, help="frames per episode (default 40, --tiny 20)")
    p.add_argument(
        "--stage-steps", type=int, default=None, help="steps of the CUDA-vs-CPU stage (default 200, --tiny 2)"
    )
    p.add_argument("--tolerance", type=float, default=0.02, help="relative loss difference allowed (default 0.02)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    p.add_argument("--out", default=None, help="write the summary JSON here")
    args = p.parse_args(argv)
    cpu = args.device == "cpu"
    args.batch_sizes = args.batch_sizes or ([4] if args.tiny else [16, 64])
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    args.num_workers = args.num_workers if args.num_workers is not None else (0 if cpu else 4)
    args.stage_steps = args.stage_steps or (2 if args.tiny else 200)
    args.episodes = args.episodes or (3 if args.tiny else 4)
    args.episode_length = args.episode_length or (20 if args.tiny else 40)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda but CUDA is not available here: run this on a GPU machine, or --device cpu --tiny")
        return 2
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory(prefix="kuavo_gpu_check_") as tmp:
        work = Path(tmp)
        summary = {"args": vars(args), "throughput": throughput(args, work), "stage": compare_stages(args, work)}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
        print(f"summary: {args.out}")
    return 0 if summary["stage"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
