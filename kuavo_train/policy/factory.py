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
from kuavo_train.errors import KuavoError, first_line
from kuavo_train.layout import MODEL_FILE
from kuavo_train.policy.attention import use_attention
from kuavo_train.policy.vision_features import accept_cached_embeddings

logger = logging.getLogger(__name__)

# Fields of a starting checkpoint's config that fix weight shapes or the token layout: taken from the
# checkpoint. Those our config also has must agree with it (a conflict is an error naming both values).
# Everything else, `vlm_model_name` included, is the user's (YAML or command line): a base naming the
# VLM by hub id still loads offline from the local dir the user gives.
_ARCHITECTURE_FIELDS = (
    "num_vlm_layers",
    "num_expert_layers",
    "expert_width_multiplier",
    "self_attn_every_n_layers",
    "attention_mode",
    "max_state_dim",
    "max_action_dim",
    "add_image_special_tokens",
    "prefix_length",
)
_CHECKED_ARCHITECTURE_FIELDS = ("num_vlm_layers", "max_state_dim", "max_action_dim")
# Keys a starting checkpoint may hold that this lerobot's SmolVLA has no place for: the normalization
# buffers of checkpoints written before lerobot moved normalization into processors (ours replace them).
EXPECTED_UNEXPECTED_KEY_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")


@dataclass
class ParameterCounts:
    total: int
    trainable: int

    def __str__(self) -> str:
        return (
            f"{self.trainable:,} trainable of {self.total:,} parameters "
            f"({100 * self.trainable / max(self.total, 1):.1f}%)"
        )


def policy_features(schema: FeatureSchema) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {key: PolicyFeature(type=FeatureType.VISUAL, shape=shape) for key, shape in schema.cameras.items()}
    inputs[STATE] = PolicyFeature(type=FeatureType.STATE, shape=(schema.state_dim,))
    outputs = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(schema.action_dim,))}
    return inputs, outputs


def make_smolvla_config(
    policy_cfg: PolicyConfig, schema: FeatureSchema, device: torch.device, base=None, base_path: str | None = None
):
    """SmolVLA config for this curriculum; architecture fields come from ``base`` (the config of the starting
    checkpoint ``base_path``) and must agree with ours; the VLM name and training settings are ours."""
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
        for name in _CHECKED_ARCHITECTURE_FIELDS:
            if getattr(base, name) != getattr(policy_cfg, name):
                raise KuavoError(
                    f"policy.{name}={getattr(policy_cfg, name)} but the starting checkpoint {base_path} was built with "
                    f"{name}={getattr(base, name)}, which fixes its weight shapes; "
                    f"set policy.{name}={getattr(base, name)}"
                )
        fields.update({name: getattr(base, name) for name in _ARCHITECTURE_FIELDS})
        fields["load_vlm_weights"] = False  # the checkpoint's safetensors hold the VLM weights
    if schema.state_dim > fields["max_state_dim"] or schema.action_dim > fields["max_action_dim"]:
        raise KuavoError(
            f"data state/action sizes ({schema.state_dim}/{schema.action_dim}) "
            "exceed the model's max_state_dim/max_action_dim "
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
            policy = SmolVLAPolicy(make_smolvla_config(policy_cfg, schema, device, base=base, base_path=init_path))
            weights = weights_file(init_path)
    except KuavoError:
        raise
    except Exception as exc:  # hub/cache/network/format problems all end here
        raise KuavoError(_loading_error(init_path, policy_cfg, exc)) from exc
    # Master weights in fp32: SmolVLA builds its modules in the VLM config's dtype (bf16 for SmolVLM2), and
    # bf16 weights round small AdamW updates away. Cast before loading, so fp32 checkpoint values are not
    # rounded on the way in. bf16 compute comes from autocast (training.mixed_precision).
    policy.to(dtype=torch.float32)
    if init_path is not None:
        load_weights_strictly(policy, weights)
    policy.to(device)
    apply_freezing(policy, policy_cfg)
    use_attention(policy, policy_cfg.attention)
    accept_cached_embeddings(policy)
    return policy


def weights_file(init_path: str) -> str:
    """``model.safetensors`` of a local policy dir, or of a hub id from the Hugging Face cache (or the hub when
    online)."""
    from huggingface_hub import hf_hub_download

    if Path(init_path).expanduser().is_dir():
        path = Path(init_path).expanduser() / MODEL_FILE
        if not path.is_file():
            raise KuavoError(
                f"{path} not found: {init_path} is not a complete lerobot policy dir (config.json + {MODEL_FILE})"
            )
        return str(path)
    return hf_hub_download(repo_id=init_path, filename=MODEL_FILE)


def load_weights_strictly(policy, path: str) -> None:
    """Every weight of ``policy`` from ``path``; a missing or unexpected key (outside the documented
    EXPECTED_UNEXPECTED_KEY_PREFIXES) or an unreadable file is a one-line error: never a half-random model."""
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(policy, path, strict=False, device="cpu")
    except Exception as exc:  # SafetensorError (truncated/corrupt), RuntimeError (shape mismatch), OSError
        lines = [line.strip() for line in str(exc).strip().splitlines()] or [type(exc).__name__]
        mismatch = next((line for line in lines if line.startswith("size mismatch")), None)
        if mismatch:
            raise KuavoError(
                f"the weights {path} have other shapes than the model built from policy.vlm_model_name "
                f"({mismatch[:300]}); point policy.vlm_model_name at the VLM this checkpoint was trained "
                "on"
            ) from exc
        raise KuavoError(
            f"cannot load the weights {path} ({type(exc).__name__}: {lines[0][:300]}); the file is truncated, "
            "corrupt or of another architecture: copy or download it again"
        ) from exc
    missing = sorted(missing)
    ignored = sorted(k for k in unexpected if k.startswith(EXPECTED_UNEXPECTED_KEY_PREFIXES))
    unexpected = sorted(k for k in unexpected if k not in ignored)
    if missing or unexpected:
        raise KuavoError(
            f"the weights {path} do not match the model built from its config: {len(missing)} missing key(s)"
            f"{_first_keys(missing)}, {len(unexpected)} unexpected key(s){_first_keys(unexpected)}; "
            "a partial or foreign "
            "checkpoint would train from half-random weights: copy or download it again"
        )
    if ignored:
        logger.info(
            "ignored %d old-format normalization buffers of %s (our processors hold the stats)", len(ignored), path
        )


def _first_keys(keys: list[str], shown: int = 3) -> str:
    return f" ({', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''})" if keys else ""


def _loading_error(init_path: str | None, policy_cfg: PolicyConfig, exc: Exception) -> str:
    what = f"pretrained policy '{init_path}'" if init_path else f"VLM backbone '{policy_cfg.vlm_model_name}'"
    detail = first_line(exc)
    where = init_path or policy_cfg.vlm_model_name
    if Path(where).expanduser().exists():
        return (
            f"could not load {what} from the local dir ({type(exc).__name__}: {detail}); "
            "check it is a complete lerobot/transformers model dir"
        )
    return (
        f"could not load {what}: it is not a local dir and not in the Hugging Face cache, and the hub is unreachable "
        f"({type(exc).__name__}: {detail}). Download it once where there is network (`hf download {where}`, "
        "and for lerobot/smolvla_base also `hf download HuggingFaceTB/SmolVLM2-500M-Video-Instruct`), "
        "copy the HF cache "
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
    if policy_cfg.freeze_connector:
        for param in vlm.get_vlm_model().connector.parameters():
            param.requires_grad = False
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
