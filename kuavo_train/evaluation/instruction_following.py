"""Does the model follow the language instruction? Open-loop action error, instruction x task.

For every task k's held-out frames and every trained instruction i, the checkpoint (loaded through
the inference wrapper, exactly as on the robot) predicts an action chunk from task k's raw
observation with instruction i; the error against task k's recorded actions is measured in raw
units. Every cell compares the 16 shared arm dims (7 + claw per side); task 4's 4 walking dims are
reported separately (its own instruction on its own data). A model that follows language has the
lowest error on the diagonal of each column; the margin is how much lower.

    kuavo-train evaluate <checkpoint or run dir> [--tasks 1 2 3 4] [--max-frames 64] [key=value ...]

The data and held-out episodes are those the checkpoint's stage recorded (its config, overrides
and data roots); key=value overrides change them, --config-name replaces the recorded config.

Writes ``instruction_matrix.json`` next to the curriculum results (read by ``kuavo-train report``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kuavo_train.errors import KuavoError

ARM_DIMS = 16
JOINT_GROUPS = {
    "left_arm": range(0, 7),
    "left_claw": range(7, 8),
    "right_arm": range(8, 15),
    "right_claw": range(15, 16),
}
WALK_DIMS = range(16, 20)


@dataclass
class InstructionMatrix:
    instructions: list[int]  # row task ids (the instruction given)
    tasks: list[int]  # column task ids (the data evaluated)
    mse: list[list[float]]  # [instruction][task], arm dims, raw units
    groups: dict[str, list[list[float]]]  # per joint group, same layout
    walking_mse: float | None  # task 4's walking dims under its own instruction
    latency_ms: dict[str, float]

    def margins(self) -> dict[int, float]:
        """Per task: best wrong-instruction error minus the right-instruction error (> 0 = follows language)."""
        result = {}
        for col, task in enumerate(self.tasks):
            if task not in self.instructions:
                continue
            right = self.mse[self.instructions.index(task)][col]
            wrong = [self.mse[row][col] for row, i in enumerate(self.instructions) if i != task]
            result[task] = min(wrong) - right if wrong else float("nan")
        return result

    def to_dict(self) -> dict:
        margins = self.margins()
        return {
            "instructions": self.instructions,
            "tasks": self.tasks,
            "mse": self.mse,
            "groups": self.groups,
            "walking_mse": self.walking_mse,
            "latency_ms": self.latency_ms,
            "margins": {str(k): v for k, v in margins.items()},
            "margin": min(margins.values()) if margins else None,
            "diagonal_lowest": all(v > 0 for v in margins.values()),
            "units": "raw action units squared (rad^2 for joints)",
        }


def evaluate_instruction_matrix(wrapper, frames: dict[int, list[dict]], seed: int = 0) -> InstructionMatrix:
    """``frames``: task id -> samples of ``TaskDataset`` (raw images, padded state, raw action chunk)."""
    instructions = [t.task_id for t in wrapper.schema.tasks]
    tasks = sorted(frames)
    steps = wrapper.n_action_steps
    mse = np.full((len(instructions), len(tasks)), np.nan)
    groups = {name: np.full_like(mse, np.nan) for name in JOINT_GROUPS}
    walking = None
    for col, task_id in enumerate(tasks):
        observations, targets, valid = _stack(frames[task_id], steps)
        noise = torch.randn(wrapper.noise_shape(len(targets)), generator=torch.Generator().manual_seed(seed + task_id))
        for row, instruction_id in enumerate(instructions):
            observations["task"] = [wrapper.schema.task(instruction_id).instruction] * len(targets)
            predicted = wrapper.predict_action_chunk(observations, noise=noise).cpu().numpy()
            error = (predicted[..., :ARM_DIMS] - targets[..., :ARM_DIMS]) ** 2 * valid[..., None]
            denominator = valid.sum()
            mse[row, col] = error.sum() / (denominator * ARM_DIMS)
            for name, dims in JOINT_GROUPS.items():
                groups[name][row, col] = error[..., list(dims)].sum() / (denominator * len(dims))
            if instruction_id == task_id and predicted.shape[-1] > ARM_DIMS:
                walk = (predicted[..., list(WALK_DIMS)] - targets[..., list(WALK_DIMS)]) ** 2 * valid[..., None]
                walking = float(walk.sum() / (denominator * len(WALK_DIMS)))
    return InstructionMatrix(
        instructions=instructions,
        tasks=tasks,
        mse=mse.tolist(),
        groups={k: v.tolist() for k, v in groups.items()},
        walking_mse=walking,
        latency_ms=measure_latency(wrapper, frames[tasks[0]][0]),
    )


def _stack(samples: list[dict], steps: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Batch raw observations; targets (B, steps, A) and validity (B, steps) of the recorded chunk."""
    cameras = [k for k in samples[0] if k.startswith("observation.images.")]
    observations = {key: torch.stack([s[key] for s in samples]) for key in cameras}
    observations["observation.state"] = torch.stack([s["observation.state"] for s in samples])
    targets = torch.stack([s["action"][:steps] for s in samples]).numpy()
    valid = (~torch.stack([s["action_is_pad"][:steps] for s in samples])).numpy().astype(np.float64)
    return observations, targets, valid


def measure_latency(wrapper, sample: dict, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per ``predict_action_chunk`` call and per ``select_action`` call (amortised over a chunk)."""
    observation = {k: v for k, v in sample.items() if k.startswith("observation.")}
    observation["task"] = wrapper.schema.task(sample["task_id"]).instruction
    wrapper.predict_action_chunk(observation)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        wrapper.predict_action_chunk(observation)
    per_chunk = (time.perf_counter() - started) / repeats
    wrapper.reset()
    calls = wrapper.n_action_steps * 2
    started = time.perf_counter()
    for _ in range(calls):
        wrapper.select_action(observation)
    per_call = (time.perf_counter() - started) / calls
    return {"per_chunk": per_chunk * 1000, "per_select_action": per_call * 1000}


def format_matrix(result: dict, names: dict[int, str]) -> str:
    tasks, instructions = result["tasks"], result["instructions"]
    lines = [
        "Open-loop action MSE on held-out frames (arm dims, raw units); rows: instruction given, columns: task data",
        f"{'instruction':<22}" + "".join(f"{'task ' + str(t):>12}" for t in tasks),
    ]
    for row, instruction in enumerate(instructions):
        cells = "".join(
            f"{result['mse'][row][col]:>11.4f}{'*' if instruction == t else ' '}" for col, t in enumerate(tasks)
        )
        lines.append(f"{str(instruction) + ' ' + names.get(instruction, '')[:18]:<22}" + cells)
    lines.append(
        "(* = matching instruction)  margins (best wrong - right): "
        + ", ".join(f"task {k}: {v:+.4f}" for k, v in result["margins"].items())
    )
    lines.append(f"diagonal lowest for every task: {result['diagonal_lowest']}")
    if result["walking_mse"] is not None:
        lines.append(f"task 4 walking dims MSE under its own instruction: {result['walking_mse']:.4f}")
    lines.append(
        f"latency: {result['latency_ms']['per_chunk']:.1f} ms per chunk, "
        f"{result['latency_ms']['per_select_action']:.2f} ms per select_action call"
    )
    return "\n".join(lines)


def evaluate_main(argv: list[str]) -> int:
    from kuavo_train.config.args import parse_config_args, quoted
    from kuavo_train.config.load import load_config
    from kuavo_train.data.prepare import prepare_curriculum_data, task_dataset
    from kuavo_train.evaluation.validate import limit_samples
    from kuavo_train.files import write_json_atomically
    from kuavo_train.layout import RunPaths
    from kuavo_train.recorded import checkpoint_of, recorded_config, run_root_of
    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    parser = argparse.ArgumentParser(
        prog="kuavo-train evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint (<run>/<stage>/best), a stage dir (its best/) or a run dir (its last complete "
        "stage's best/)",
    )
    parser.add_argument(
        "--config-name",
        default=None,
        help="config to rebuild the data with (default: the one the checkpoint's stage recorded)",
    )
    parser.add_argument("--config-path", default=None, help="folder of --config-name (default configs/policy)")
    parser.add_argument(
        "--tasks", type=int, nargs="*", default=None, help="task ids to evaluate (default: all trained)"
    )
    parser.add_argument("--max-frames", type=int, default=64, help="held-out frames per task (evenly spaced)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.epilog = (
        "key=value arguments override config keys (e.g. data.roots.weighing=/new/path); see `kuavo-train keys`."
    )
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o or o.startswith("-")]
    if bad:
        raise KuavoError(f"unknown argument(s) {bad}; config overrides look like key=value (see --help)")
    run_root = run_root_of(args.checkpoint)
    checkpoint = checkpoint_of(args.checkpoint)
    if args.config_name or args.config_path:
        flags = [f"--config-name={args.config_name}"] if args.config_name else []
        flags += [f"--config-path={args.config_path}"] if args.config_path else []
        parsed = parse_config_args([*flags, *overrides])
        cfg = load_config(
            parsed.config_dir, parsed.config_name, [*parsed.overrides, f"training.output_directory={quoted(run_root)}"]
        )
    else:
        cfg = recorded_config(checkpoint, overrides)
    print(f"evaluating {checkpoint}")
    wrapper = SmolVLAPolicyWrapper.from_pretrained(checkpoint, device=args.device)
    data = prepare_curriculum_data(cfg, run_root)
    task_ids = args.tasks or [t.task_id for t in wrapper.schema.tasks]
    frames = {}
    for task_id in task_ids:
        dataset = limit_samples(
            task_dataset(data, task_id, data.splits[task_id].val, wrapper.chunk_size), args.max_frames
        )
        frames[task_id] = [dataset[i] for i in range(len(dataset))]
    result = evaluate_instruction_matrix(wrapper, frames, seed=cfg.training.seed).to_dict()
    result["checkpoint"] = str(Path(checkpoint).resolve())
    written = RunPaths(run_root).instruction_matrix
    write_json_atomically(written, result)
    print(format_matrix(result, {t.task_id: t.name for t in wrapper.schema.tasks}))
    print(f"written: {written}")
    return 0
