"""Build or load the SmolVLA policy for a stage, install our processors, apply freezing.

Normalization: processors are always built from the curriculum's merged stats, never taken from
the starting checkpoint (``lerobot/smolvla_base`` ships stats under other dataset keys, which would
silently skip normalization: lerobot issues #1763, #2221).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kuavo_train.config.schema import PolicyConfig
from kuavo_train.data.constants import ACTION, STATE
from kuavo_train.data.schema import FeatureSchema
from kuavo_train.data.stats import stats_to_tensors
from kuavo_train.errors import KuavoError

logger = logging.getLogger(__name__)

# Fields of a starting checkpoint's config that fix weight shapes: taken from the checkpoint.
_ARCHITECTURE_FIELDS = (
    "vlm_model_name", "num_vlm_layers", "num_expert_layers", "expert_width_multiplier",
    "self_attn_every_n_layers", "attention_mode", "max_state_dim", "max_action_dim",
    "add_image_special_tokens", "prefix_length",
)


@dataclass
class ParameterCounts:
    total: int
    trainable: int

    def __str__(self) -> str:
        return f"{self.trainable:,} trainable of {self.total:,} parameters ({100 * self.trainable / max(self.total, 1):.1f}%)"


def policy_features(schema: FeatureSchema) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {key: PolicyFeature(type=FeatureType.VISUAL, shape=shape) for key, shape in schema.cameras.items()}
    inputs[STATE] = PolicyFeature(type=FeatureType.STATE, shape=(schema.state_dim,))
    outputs = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(schema.action_dim,))}
    return inputs, outputs


def make_smolvla_config(policy_cfg: PolicyConfig, schema: FeatureSchema, device: torch.device, base=None):
    """SmolVLA config for this curriculum; architecture fields come from ``base`` when starting from a checkpoint."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    inputs, outputs = policy_features(schema)
    fields = dict(
        input_features=inputs,
        output_features=outputs,
        device=device.type if device.index is None else str(device),
        push_to_hub=False,
        chunk_size=policy_cfg.chunk_size,
        n_action_steps=policy_cfg.n_action_steps,
        max_state_dim=policy_cfg.max_state_dim,
        max_action_dim=policy_cfg.max_action_dim,
        resize_imgs_with_padding=tuple(policy_cfg.resize_imgs_with_padding),
        num_steps=policy_cfg.num_steps,
        tokenizer_max_length=policy_cfg.tokenizer_max_length,
        freeze_vision_encoder=policy_cfg.freeze_vision_encoder,
        train_expert_only=policy_cfg.train_expert_only,
        vlm_model_name=policy_cfg.vlm_model_name,
        load_vlm_weights=policy_cfg.load_vlm_weights,
        num_vlm_layers=policy_cfg.num_vlm_layers,
    )
    if base is not None:
        fields.update({name: getattr(base, name) for name in _ARCHITECTURE_FIELDS})
        fields["load_vlm_weights"] = False  # the checkpoint's safetensors hold the VLM weights
    if schema.state_dim > fields["max_state_dim"] or schema.action_dim > fields["max_action_dim"]:
        raise KuavoError(
            f"data state/action sizes ({schema.state_dim}/{schema.action_dim}) exceed the model's max_state_dim/max_action_dim "
            f"({fields['max_state_dim']}/{fields['max_action_dim']})"
        )
    return SmolVLAConfig(**fields)


def load_policy(policy_cfg: PolicyConfig, schema: FeatureSchema, init_path: str | None, device: torch.device):
    """A SmolVLA policy on ``device``: fresh (``init_path`` None) or from a hub id / local dir."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    try:
        if init_path is None:
            policy = SmolVLAPolicy(make_smolvla_config(policy_cfg, schema, device))
        else:
            base = PreTrainedConfig.from_pretrained(init_path)
            config = make_smolvla_config(policy_cfg, schema, device, base=base)
            policy = SmolVLAPolicy.from_pretrained(init_path, config=config)
    except KuavoError:
        raise
    except Exception as exc:  # hub/cache/network/format problems all end here
        raise KuavoError(_loading_error(init_path, policy_cfg, exc)) from exc
    policy.to(device)
    apply_freezing(policy, policy_cfg)
    return policy


def _loading_error(init_path: str | None, policy_cfg: PolicyConfig, exc: Exception) -> str:
    what = f"pretrained policy '{init_path}'" if init_path else f"VLM backbone '{policy_cfg.vlm_model_name}'"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = init_path or policy_cfg.vlm_model_name
    if Path(where).expanduser().exists():
        return f"could not load {what} from the local dir ({type(exc).__name__}: {detail}); check it is a complete lerobot/transformers model dir"
    return (
        f"could not load {what}: it is not a local dir and not in the Hugging Face cache, and the hub is unreachable "
        f"({type(exc).__name__}: {detail}). Download it once where there is network (`hf download {where}`, "
        f"and for lerobot/smolvla_base also `hf download HuggingFaceTB/SmolVLM2-500M-Video-Instruct`), copy the HF cache "
        f"(~/.cache/huggingface) or the dirs here, and set HF_HUB_OFFLINE=1 or policy.pretrained_path / "
        f"policy.vlm_model_name to the local dirs (README: Fine-tune the real smolvla_base)"
    )


def apply_freezing(policy, policy_cfg: PolicyConfig) -> ParameterCounts:
    """SmolVLA's own flags (vision encoder, expert-only) plus freezing the lowest N VLM text layers."""
    vlm = policy.model.vlm_with_expert
    vlm.freeze_vision_encoder = policy_cfg.freeze_vision_encoder
    vlm.train_expert_only = policy_cfg.train_expert_only
    for param in vlm.vlm.parameters():
        param.requires_grad = True
    vlm.set_requires_grad()
    if not policy_cfg.train_expert_only and policy_cfg.freeze_vlm_layers > 0:
        text_model = vlm.get_vlm_model().text_model
        frozen = [text_model.embed_tokens, *text_model.layers[: policy_cfg.freeze_vlm_layers]]
        for module in frozen:
            for param in module.parameters():
                param.requires_grad = False
    return count_parameters(policy)


def count_parameters(policy) -> ParameterCounts:
    params = list(policy.parameters())
    return ParameterCounts(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def make_processors(policy, stats: dict):
    """lerobot's SmolVLA pre/post-processors with the curriculum's merged stats installed."""
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    return make_smolvla_pre_post_processors(policy.config, dataset_stats=stats_to_tensors(stats))
