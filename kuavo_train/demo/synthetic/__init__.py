"""Synthetic Kuavo datasets in the real export format (LeRobot v2.1), for tests and the demo.

The Kuavo robot exports LeRobot **v2.1** datasets (``meta/info.json`` + ``meta/*.jsonl`` +
``data/chunk-000/episode_XXXXXX.parquet``, optional ``videos/``).  This package writes datasets in
exactly that layout, so the real loading path (our v2.1 -> v3.0 conversion, built on lerobot's own
``convert_dataset_v21_to_v30`` step functions, then ``LeRobotDataset``) is exercised end to end.

The content is a small, fully known control problem (see ``docs/synthetic_data.md``):

* every episode draws a goal ``g`` in ``[-1, 1]^2`` that is only visible in the head camera
  (whole-image R/G tint + a white square whose position encodes ``g``);
* the arm moves to a task-specific target ``T1_k = L1 @ [R_k g, 1]``, closes the task's gripper(s),
  then carries to ``T2_k = L2 @ [R_k g, 1]``; ``R_k`` is a task-specific rotation of the goal
  (task 2 = exact opposite of task 1, task 3/4 = +-90 degrees);
* the 4 walking dims of a 20-dim action are a task-specific function of ``g`` and of the stage,
  which is visible in the state (gripper) and the wrist cameras (brightness).

So the next-50-step action chunk is a deterministic function of (instruction, image, state) up to a
small noise, and tasks conflict: the same observation needs different actions for different tasks.
:func:`expert_action_chunk` gives the noise-free ground truth.

Modules: :mod:`.expert` (the scripted expert: targets, actions, rollouts), :mod:`.render` (camera
frames), :mod:`.lerobot_v21` (format constants, features, stats, parquet/mp4/jsonl encoders) and
:mod:`.writer` (:func:`write_synthetic_task`, the generation record, the CLI).

CLI::

    python -m kuavo_train.demo.synthetic --out DIR --task-id N --instruction "..." \\
        [--action-dim 20] [--episodes N] [--video]
"""

from kuavo_train.demo.synthetic.expert import (
    ACTION_DIM_WALK,
    CHUNK_HORIZON,
    JOINT_NAMES,
    STATE_DIM,
    WALK_NAMES,
    episode_conditions,
    expert_action,
    expert_action_chunk,
    task_rotation,
    task_targets,
)
from kuavo_train.demo.synthetic.lerobot_v21 import CAMERA_KEYS, DEPTH_KEYS, FPS, choose_video_codec
from kuavo_train.demo.synthetic.render import render_depth, render_head_image, render_wrist_image
from kuavo_train.demo.synthetic.writer import SyntheticTaskSpec, load_generation_info, write_synthetic_task

__all__ = [
    "ACTION_DIM_WALK",
    "CAMERA_KEYS",
    "CHUNK_HORIZON",
    "DEPTH_KEYS",
    "FPS",
    "JOINT_NAMES",
    "STATE_DIM",
    "WALK_NAMES",
    "SyntheticTaskSpec",
    "choose_video_codec",
    "episode_conditions",
    "expert_action",
    "expert_action_chunk",
    "load_generation_info",
    "render_depth",
    "render_head_image",
    "render_wrist_image",
    "task_rotation",
    "task_targets",
    "write_synthetic_task",
]
