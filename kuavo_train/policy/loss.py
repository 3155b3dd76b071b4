"""SmolVLA's flow-matching loss, averaged over each sample's own action dims and real time steps.

lerobot's ``SmolVLAPolicy.forward`` averages over all action dims of the model's feature, which
would count a 16-dim task's zero-padded dims 17-20 as targets. Here the per-element losses of
``VLAFlowMatching.forward`` are masked by ``action_is_pad`` (time) and ``action_dim_mask`` (dims).
"""

from __future__ import annotations

import torch
from lerobot.utils.constants import OBS_IMAGES, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch import Tensor

from kuavo_train.data.constants import ACTION_DIM_MASK, ACTION_IS_PAD, SAMPLE_SEED, parse_cached_features_key
from kuavo_train.policy.vision_features import cached_images

# Our per-sample bookkeeping keys: kept out of lerobot's processor pipeline (so are cached image embeddings).
SIDE_KEYS = (ACTION_DIM_MASK, "task_id", SAMPLE_SEED)


def _is_side_key(key: str) -> bool:
    return key in SIDE_KEYS or parse_cached_features_key(key) is not None


def split_side_keys(batch: dict) -> tuple[dict, dict]:
    """(batch for lerobot's preprocessor, our side keys and cached image embeddings)."""
    side = {key: value for key, value in batch.items() if _is_side_key(key)}
    return {k: v for k, v in batch.items() if not _is_side_key(k)}, side


def prepare_batch(raw: dict, preprocessor, device: torch.device) -> tuple[dict, dict]:
    """(preprocessed batch on ``device``, side keys) of a loader batch; uint8 images become float in
    [0, 1] after the copy to ``device``, the same values lerobot's float decoding gives."""
    batch, side = split_side_keys(raw)
    for key, value in batch.items():
        if key.startswith(OBS_IMAGES) and isinstance(value, Tensor) and value.dtype == torch.uint8:
            batch[key] = value.to(device, non_blocking=True).float().div_(255.0)
    return preprocessor(batch), side


def per_sample_loss(
    policy,
    batch: dict,
    dim_mask: Tensor,
    noise: Tensor | None = None,
    time: Tensor | None = None,
    side: dict | None = None,
) -> Tensor:
    """(B,) loss of a preprocessed batch; ``dim_mask`` is (B, A) bool over the schema's action dims. Cached
    image embeddings in ``side`` (``data.feature_cache``) stand in for the images."""
    cached = cached_images(policy, batch, side or {}, dim_mask.device)
    images, img_masks = cached if cached is not None else policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    actions = policy.prepare_action(batch)  # (B, T, max_action_dim)
    mask = torch.zeros(actions.shape[0], actions.shape[2], dtype=torch.bool, device=actions.device)
    mask[:, : dim_mask.shape[1]] = dim_mask.to(actions.device)
    # A task's padded dims are 0 in normalized space, exactly like lerobot's own padding up to
    # max_action_dim, whatever the normalization of the other tasks' real dims there.
    actions = actions * mask[:, None, :]
    losses = policy.model.forward(
        images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state, actions, noise, time
    )  # (B, T, max_action_dim)
    valid = mask[:, None, :].expand_as(losses)
    if ACTION_IS_PAD in batch:
        valid = valid & ~batch[ACTION_IS_PAD].to(losses.device)[:, :, None]
    losses = losses * valid
    return losses.sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1)


def fixed_noise_and_time(
    seeds: Tensor, chunk_size: int, action_dim: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Per-sample noise (B, T, D) and flow time (B,) drawn from each sample's own seed.

    Time follows SmolVLA's training distribution Beta(1.5, 1) scaled to [0.001, 1] (inverse CDF
    u^(1/1.5)), so validation measures the same objective as training, without randomness.
    """
    noises, times = [], []
    for seed in seeds.tolist():
        generator = torch.Generator().manual_seed(int(seed))
        noises.append(torch.randn(chunk_size, action_dim, generator=generator))
        u = torch.rand(1, generator=generator)
        times.append(u.pow(1 / 1.5) * 0.999 + 0.001)
    return torch.stack(noises).to(device), torch.cat(times).to(device)
