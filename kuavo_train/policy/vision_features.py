"""SmolVLA's image embeddings computed once and fed back from a cache (``data.feature_cache``).

lerobot's ``VLAFlowMatching.embed_prefix`` calls ``vlm_with_expert.embed_image(image)`` per camera:
SigLIP (``vision_model``), then SmolVLM's ``connector``. When those weights are frozen, the result
for a frame never changes, so it can be computed once (`embed_images`) and given back instead of the
image. Two levels:

- "connector": the output of ``embed_image``, exact when SigLIP and the connector are frozen
  (``policy.train_expert_only``, or ``policy.freeze_connector`` with ``freeze_vision_encoder``);
  ``PolicyConfig.exact_feature_cache_level`` picks the deepest exact level;
- "vision": SigLIP's output; the connector still runs in every step, so it can train. Exact when
  only the vision encoder is frozen (``policy.freeze_vision_encoder``).

`accept_cached_embeddings` makes the policy's ``embed_image`` pass a 3-D (batch, tokens, dim) input
through unchanged (a real image is 4-D and goes the usual way), so lerobot's own ``embed_prefix``
builds the prefix from cached embeddings: same scaling, masks and special tokens. Nothing that is
saved changes.
"""

from __future__ import annotations

import hashlib
import types

import torch

from kuavo_train.data.constants import parse_cached_features_key
from kuavo_train.data.schema import camera_padding_mask_key

CACHE_LEVELS = ("vision", "connector")


def _vlm(policy):
    return policy.model.vlm_with_expert.get_vlm_model()


def embedding_modules(policy, level: str) -> list[torch.nn.Module]:
    vlm = _vlm(policy)
    return [vlm.vision_model, vlm.connector] if level == "connector" else [vlm.vision_model]


def embedding_weights_digest(policy, level: str) -> str:
    """sha256 of the weights computing the ``level`` embedding (part of the cache key)."""
    digest = hashlib.sha256(level.encode())
    for module in embedding_modules(policy, level):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def embed_images(policy, images: dict[str, torch.Tensor], level: str) -> dict[str, torch.Tensor]:
    """camera -> (B, tokens, dim) embedding of float images (B, C, H, W) in [0, 1], as ``embed_prefix``
    computes it: lerobot's ``prepare_images`` (resize with padding, [-1, 1]), then SigLIP (+ connector)."""
    prepared, _ = policy.prepare_images(dict(images))
    cameras = [key for key in policy.config.image_features if key in images]
    vlm = _vlm(policy)
    embeddings = {}
    for camera, image in zip(cameras, prepared, strict=True):
        hidden = vlm.vision_model(pixel_values=image.to(dtype=vlm.vision_model.dtype), patch_attention_mask=None)
        hidden = hidden.last_hidden_state
        embeddings[camera] = vlm.connector(hidden) if level == "connector" else hidden
    return embeddings


def accept_cached_embeddings(policy) -> None:
    """Let ``policy``'s ``embed_image`` take a cached embedding (3-D) as already embedded."""
    model = policy.model.vlm_with_expert
    if getattr(model.embed_image, "accepts_cached", False):
        return
    original = types.MethodType(type(model).embed_image, model)

    def embed_image(image: torch.Tensor) -> torch.Tensor:
        return image if image.ndim == 3 else original(image)

    embed_image.accepts_cached = True
    model.embed_image = embed_image


def cached_images(policy, batch: dict, side: dict, device: torch.device) -> tuple[list, list] | None:
    """(embeddings, masks) per camera in the policy's camera order, for ``embed_prefix``, from the cached
    embeddings in ``side``; None when the batch has images instead."""
    found = {}
    for key, value in side.items():
        parsed = parse_cached_features_key(key)
        if parsed is not None:
            found[parsed[1]] = (parsed[0], value)
    if not found:
        return None
    accept_cached_embeddings(policy)
    embeddings, masks = [], []
    for camera in policy.config.image_features:
        level, value = found[camera]
        value = value.to(device, non_blocking=True)
        embeddings.append(_vlm(policy).connector(value) if level == "vision" else value)
        mask_key = camera_padding_mask_key(camera)
        masks.append(
            batch[mask_key].bool()
            if mask_key in batch
            else torch.ones(value.shape[0], dtype=torch.bool, device=value.device)
        )
    return embeddings, masks


def expected_embedding(policy_cfg, level: str) -> tuple[int, int] | None:
    """(tokens, dim) of one image's ``level`` embedding from the VLM's config (no model built), or None when
    the config cannot be read here. SigLIP makes one token per patch of the resized image; SmolVLM's connector
    shuffles scale_factor^2 patches into one token of the language model's width."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(policy_cfg.vlm_model_name)
        vision = config.vision_config
        width, height = policy_cfg.resize_imgs_with_padding
        patches = (height // vision.patch_size) * (width // vision.patch_size)
        if level == "vision":
            return patches, vision.hidden_size
        return patches // config.scale_factor**2, config.text_config.hidden_size
    except Exception:  # noqa: BLE001 - offline hub, missing or foreign config: the plan says "unknown"
        return None


def embedding_flops(policy_cfg) -> float | None:
    """Rough FLOPs of embedding one image with SigLIP (2 x tokens x 12 x layers x width^2)."""
    from transformers import AutoConfig

    try:
        vision = AutoConfig.from_pretrained(policy_cfg.vlm_model_name).vision_config
        width, height = policy_cfg.resize_imgs_with_padding
        tokens = (height // vision.patch_size) * (width // vision.patch_size)
        return 2.0 * tokens * 12 * vision.num_hidden_layers * vision.hidden_size**2
    except Exception:  # noqa: BLE001
        return None
