"""One task's frames as training samples in the curriculum's feature schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kuavo_train.data.constants import (
    ACTION,
    ACTION_DIM_MASK,
    ACTION_IS_PAD,
    SAMPLE_SEED,
    STATE,
    TASK,
    TASK_ID,
    cached_features_key,
)
from kuavo_train.data.feature_cache import FeatureCache
from kuavo_train.data.schema import FeatureSchema, TaskFeatures, camera_padding_mask_key
from kuavo_train.data.video import keep_decoders_per_process

# Seeds of validation samples are task_id * this + index, unique across tasks.
_SEED_STRIDE = 10_000_000


def pad_last_dim(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last dim of ``x`` to ``size``."""
    if x.shape[-1] == size:
        return x
    return torch.nn.functional.pad(x, (0, size - x.shape[-1]))


def as_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 as is; lerobot's float decoding of an 8-bit PNG (k / 255) back to exactly k. One dtype for
    every task's cameras, so replay batches mixing PNG and mp4 tasks stack."""
    if image.dtype == torch.uint8:
        return image
    return image.mul(255.0).round_().to(torch.uint8)


def action_dim_mask(task_action_dim: int, size: int) -> torch.Tensor:
    """(size,) bool, True on the task's own action dims."""
    mask = torch.zeros(size, dtype=torch.bool)
    mask[:task_action_dim] = True
    return mask


class TaskDataset(Dataset):
    """Frames of some episodes of one task, padded to the schema, with the task's instruction.

    Each item: camera images (3, H, W) uint8, whether stored as mp4 or as PNG (``policy.loss.prepare_batch``
    makes them float in [0, 1] on the device, the values lerobot's own decoding gives), ``observation.state`` (S,),
    ``action`` (T, A) with ``action_is_pad`` (T,), ``action_dim_mask`` (A,), ``task`` (str), ``task_id``,
    ``sample_seed`` (int, fixes validation noise). S, A are the schema's union sizes. With ``features``
    (the task's `FeatureCache`), each camera's cached embedding (tokens, dim) under
    ``cached_features_key(level, camera)`` replaces its image, and no image is read.
    """

    def __init__(
        self,
        v30_root: Path,
        task: TaskFeatures,
        schema: FeatureSchema,
        episodes: list[int],
        chunk_size: int,
        *,
        video_backend: str,
        features: FeatureCache | None = None,
    ):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        keep_decoders_per_process()
        self.task = task
        self.schema = schema
        self.episodes = list(episodes)
        self.chunk_size = chunk_size
        # No delta_timestamps: lerobot 0.6.1 would decode every camera image of the 50 future frames
        # just to read their actions. Chunks come from the action column, cached once, instead.
        # uint8 video frames: a quarter of the bytes through worker shared memory, pinned buffers and the
        # host-to-device copy; they become float after the copy.
        self.inner = LeRobotDataset(
            repo_id=f"kuavo/{task.name}",
            root=v30_root,
            episodes=self.episodes,
            video_backend=video_backend,
            return_uint8=True,
        )
        self._actions, self._episode_end, self._states, self.frame_indices = _frame_table(self.inner)
        # With cached image embeddings, an item reads no image at all: state and actions come from the
        # tables above, the embeddings from the cache's memory map.
        self.features = features
        self._dim_mask = action_dim_mask(task.action_dim, schema.action_dim)
        # Cameras this task's data lacks: a blank image, masked out by its padding mask.
        self._blank = {c: torch.zeros(schema.cameras[c], dtype=torch.uint8) for c in task.missing_cameras}

    def __len__(self) -> int:
        return len(self.inner)

    def action_chunk(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, A) actions from frame ``index`` on, the episode's last action repeated past its end, and (T,) is_pad."""
        steps = index + torch.arange(self.chunk_size)
        end = int(self._episode_end[index])
        is_pad = steps > end
        return self._actions[steps.clamp(max=end)], is_pad

    def __getitem__(self, index: int) -> dict:
        actions, is_pad = self.action_chunk(index)
        if self.features is None:
            item = self.inner[index]
            sample = {
                camera: self._blank[camera] if camera in self._blank else as_uint8_image(item[camera])
                for camera in self.schema.cameras
            }
            state = item[STATE].float()
        else:
            embeddings = self.features.read(int(self.frame_indices[index]))
            sample = {cached_features_key(self.features.key.level, c): v for c, v in embeddings.items()}
            state = self._states[index]
        if self.schema.masks_cameras:
            for camera in self.schema.cameras:
                sample[camera_padding_mask_key(camera)] = torch.tensor(camera not in self._blank)
        sample[STATE] = pad_last_dim(state, self.schema.state_dim)
        sample[ACTION] = pad_last_dim(actions, self.schema.action_dim)
        sample[ACTION_IS_PAD] = is_pad
        sample[ACTION_DIM_MASK] = self._dim_mask
        sample[TASK] = self.task.instruction
        sample[TASK_ID] = self.task.task_id
        sample[SAMPLE_SEED] = self.task.task_id * _SEED_STRIDE + index
        return sample


def _frame_table(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Of the (episode-filtered) dataset's rows: actions (N, A) and states (N, S) float32, each row's
    episode-last row, and the rows' global frame indices (N,)."""
    columns = dataset.hf_dataset.select_columns([ACTION, STATE, "episode_index", "index"]).with_format("numpy")
    actions = torch.as_tensor(np.stack(columns[ACTION]), dtype=torch.float32)
    states = torch.as_tensor(np.stack(columns[STATE]), dtype=torch.float32)
    episode = np.asarray(columns["episode_index"]).reshape(-1)
    last_of_run = np.r_[np.nonzero(episode[1:] != episode[:-1])[0], len(episode) - 1]
    run_lengths = np.diff(np.r_[-1, last_of_run])
    indices = np.asarray(columns["index"], dtype=np.int64).reshape(-1)
    return actions, torch.as_tensor(np.repeat(last_of_run, run_lengths)), states, indices
