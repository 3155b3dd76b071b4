"""Demo assets, generated deterministically on first use: tiny backbone + synthetic Kuavo data.

They go into a git-ignored folder (default ``demo_data/``) whose layout matches the demo config
(configs/policy/smolvla_sequential_demo.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kuavo_train.config.schema import Config
from kuavo_train.demo.synthetic import SyntheticTaskSpec, write_synthetic_task
from kuavo_train.demo.tiny_backbone import build_tiny_backbone


@dataclass(frozen=True)
class DemoDataSize:
    num_episodes: int = 12
    min_len: int = 40
    max_len: int = 60
    image_hw: tuple[int, int] = (48, 64)


def ensure_demo_assets(cfg: Config, size: DemoDataSize = DemoDataSize(), seed: int = 0, video: bool = False) -> None:
    """Build the backbone named by ``policy.vlm_model_name`` and each task's data at its root, if absent
    (``video``: cameras as mp4 instead of PNG in parquet)."""
    build_backbone_for(cfg, seed)
    for task in cfg.tasks:
        spec = SyntheticTaskSpec(
            task_id=task.id, instruction=task.language_instruction, action_dim=task.data.action_dim or 16
        )
        write_synthetic_task(
            Path(task.data.root),
            spec,
            num_episodes=size.num_episodes,
            min_len=size.min_len,
            max_len=size.max_len,
            image_hw=size.image_hw,
            video=video,
            seed=seed + task.id,
        )


def build_backbone_for(cfg: Config, seed: int = 0) -> Path:
    """The tiny backbone at ``policy.vlm_model_name``, sized by the config and knowing its tasks' instructions."""
    return build_tiny_backbone(
        Path(cfg.policy.vlm_model_name),
        seed=seed,
        instructions=[t.language_instruction for t in cfg.tasks],
        image_size=cfg.policy.resize_imgs_with_padding[0],
        num_text_layers=cfg.policy.num_vlm_layers,
    )
