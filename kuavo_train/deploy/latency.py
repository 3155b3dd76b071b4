"""How fast a checkpoint or export acts: load time, ms per action chunk and per `select_action` call."""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from pathlib import Path

from kuavo_train.errors import KuavoError


def measure_select_action_latency(
    folder: str | Path,
    *,
    device: str = "cpu",
    repeats: int = 5,
    task_id: int | None = None,
    vlm_model_name: str | Path | None = None,
) -> dict:
    """Load ``folder`` through the wrapper and time it on a synthetic observation of its schema
    (``task_id`` None: the checkpoint's own task).

    Returns ``{"load_s", "per_chunk" (ms per predict_action_chunk), "per_select_action" (ms per
    select_action call, averaged over 2 * n_action_steps calls: 2 model runs, the rest queue pops),
    "select_action_model" / "select_action_pop" (median ms of the select_action calls that run the
    model / only pop its queue, over ``repeats`` chunks), "n_action_steps", "device", "threads",
    "task_id", "task_name"}``.
    """
    import torch

    from kuavo_train.evaluation.instruction_following import measure_latency
    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    if repeats < 1:
        raise KuavoError(f"--repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        wrapper = SmolVLAPolicyWrapper.from_pretrained(folder, device=device, vlm_model_name=vlm_model_name)
    load_s = time.perf_counter() - started
    if task_id is None:  # the checkpoint's own (latest trained) task
        task_id = wrapper.checkpoint_meta.get("task_id", wrapper.schema.tasks[-1].task_id)
    observation = wrapper.make_example_observation(task_id, seed=0)
    task = wrapper.resolve_instruction(observation.pop("task"))
    timings = measure_latency(wrapper, {**observation, "task_id": task.task_id}, repeats=repeats)
    steps = wrapper.n_action_steps
    calls: tuple[list[float], list[float]] = ([], [])  # (model runs, queue pops), seconds
    wrapper.reset()
    for call in range(steps * repeats):
        started = time.perf_counter()
        wrapper.select_action({**observation, "task": task.instruction})
        calls[0 if call % steps == 0 else 1].append(time.perf_counter() - started)
    return {
        "load_s": load_s,
        **timings,
        "select_action_model": _median_ms(calls[0]),
        "select_action_pop": _median_ms(calls[1]),
        "n_action_steps": steps,
        "device": str(wrapper.device),
        "threads": torch.get_num_threads(),
        "task_id": task.task_id,
        "task_name": task.name,
    }


def _median_ms(seconds: list[float]) -> float:
    return float(statistics.median(seconds)) * 1000 if seconds else float("nan")


def format_latency(folder: Path, latency: dict) -> str:
    n = latency["n_action_steps"]
    return "\n".join(
        [
            f"Latency of {folder} on {latency['device']} (torch threads: {latency['threads']}), "
            f"task {latency['task_id']} "
            f"({latency['task_name']}), synthetic observation:",
            f"  load:                 {latency['load_s']:.1f} s (library imports included)",
            f"  predict_action_chunk: {latency['per_chunk']:.1f} ms per chunk ({n} actions)",
            f"  select_action:        {latency['select_action_model']:.1f} ms on a call that runs the model "
            f"(1 call in {n}), "
            f"{latency['select_action_pop']:.2f} ms on one that pops the queue; {latency['per_select_action']:.1f} ms "
            f"per call on average",
        ]
    )
