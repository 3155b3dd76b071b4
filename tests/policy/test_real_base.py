"""Fine-tuning a base laid out like `lerobot/smolvla_base`, offline: explicit VLM dir, HF cache, strict
loading, fp32 master weights, the base's frozen layers kept and its normalization replaced.

The base is built from the tiny backbone the way the real one is shaped: 6-dim state/action, cameras
observation.image/image2/image3, its own normalization stats, `config.json` naming the VLM by its hub
id, weights perturbed so that no fresh initialisation reproduces them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kuavo_train.data.schema import FeatureSchema, TaskFeatures
from kuavo_train.errors import KuavoError
from kuavo_train.policy.factory import load_policy
from tests.conftest import REPO_ROOT, TASK_FILES

VLM_HUB_ID = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
BASE_HUB_ID = "lerobot/smolvla_base"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# One stage in seconds: 2 optimizer steps of 2 samples, 2 validation samples per task (nothing here depends on more).
FAST = [
    "training.epochs_override=1",
    "training.max_steps_per_epoch=2",
    "training.batch_size=2",
    "training.max_validation_samples=2",
]
SCHEMA = FeatureSchema(
    cameras={f"observation.images.{c}": (3, 24, 32) for c in ("head_cam_h", "wrist_cam_l", "wrist_cam_r")},
    state_dim=16,
    action_dim=20,
    fps=10.0,
    tasks=(TaskFeatures(1, "a", "do a", 16, 16), TaskFeatures(4, "d", "do d", 16, 20)),
)


def write_base(out: Path, vlm_dir: Path, dtype: str = "float32") -> Path:
    """A smolvla_base-shaped checkpoint from the tiny backbone (saved weights are fp32, like the hub file)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    inputs = {
        f"observation.{name}": PolicyFeature(FeatureType.VISUAL, (3, 256, 256))
        for name in ("image", "image2", "image3")
    }
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    config = SmolVLAConfig(
        vlm_model_name=str(vlm_dir),
        load_vlm_weights=False,
        num_vlm_layers=4,
        device="cpu",
        push_to_hub=False,
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    torch.manual_seed(123)
    policy = SmolVLAPolicy(config).float()
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    policy.save_pretrained(out)
    stats = {
        key: {
            "mean": torch.full((6,), 7.0),
            "std": torch.full((6,), 3.0),
            "min": torch.full((6,), -9.0),
            "max": torch.full((6,), 9.0),
        }
        for key in ("observation.state", "action")
    }
    for processor in make_smolvla_pre_post_processors(config, dataset_stats=stats):
        processor.save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())
    saved["vlm_model_name"] = VLM_HUB_ID  # as the real base names it
    (out / "config.json").write_text(json.dumps(saved, indent=2))
    return out


def bf16_backbone(tiny: Path, out: Path) -> Path:
    """The tiny backbone with the dtype SmolVLM2's config.json declares (bfloat16)."""
    shutil.copytree(tiny, out)
    config = json.loads((out / "config.json").read_text())
    for node in (config, config.get("text_config", {}), config.get("vision_config", {})):
        node["dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(config))
    return out


def put_in_hf_cache(cache: Path, repo_id: str, files: Path) -> None:
    """The Hugging Face cache layout: models--org--name/snapshots/<revision>/ and refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture(scope="module")
def tiny(demo_env) -> Path:
    return demo_env.root / "tiny_smolvlm"


@pytest.fixture(scope="module")
def base(tiny, tmp_path_factory) -> Path:
    return write_base(tmp_path_factory.mktemp("base") / "smolvla_base", tiny)


@pytest.fixture(scope="module")
def stage1(demo_env, base, tmp_path_factory):
    """Stage 1 from the base, offline, with the user's local VLM dir replacing the base's hub id."""
    from kuavo_train.curriculum.stage import run_stage

    output = tmp_path_factory.mktemp("from_base") / "run"
    cfg = demo_env.config(TASK_FILES[0], [*FAST, f"policy.pretrained_path={base}"], output=output)
    assert run_stage(cfg).status == "complete"
    return cfg, output / "task1_moving_grasp" / "best"


def test_explicit_vlm_dir_wins_over_the_bases_hub_id(stage1, tiny):
    _, best = stage1
    assert json.loads((best / "config.json").read_text())["vlm_model_name"] == str(tiny)


def test_frozen_layers_equal_the_base_bit_for_bit_and_the_expert_trained(stage1, base):
    cfg, best = stage1
    before, after = load_file(base / "model.safetensors"), load_file(best / "model.safetensors")
    text = "model.vlm_with_expert.vlm.model.text_model."
    frozen = [
        k
        for k in before
        if k.startswith("model.vlm_with_expert.vlm.model.vision_model.")
        or any(k.startswith(f"{text}layers.{i}.") for i in range(cfg.policy.freeze_vlm_layers))
    ]
    expert = [k for k in before if k.startswith("model.vlm_with_expert.lm_expert.")]
    assert frozen and expert
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in expert)


def test_best_holds_the_kuavo_stats_not_the_bases(stage1):
    cfg, best = stage1
    run_stats = json.loads((best.parent.parent / "normalization_stats.json").read_text())
    normalizer = next(best.glob("policy_preprocessor_step_*normalizer_processor.safetensors"))
    state_mean = load_file(normalizer)["observation.state.mean"]
    assert state_mean.shape == (16,)
    np.testing.assert_allclose(
        state_mean.numpy(), np.asarray(run_stats["observation.state"]["mean"], np.float32), rtol=1e-6
    )
    assert not torch.allclose(state_mean[:6], torch.full((6,), 7.0))


@pytest.mark.parametrize("breakage", ["missing", "unexpected", "truncated"])
def test_a_broken_base_is_a_one_line_error(demo_env, base, tmp_path, breakage):
    broken = tmp_path / "broken"
    shutil.copytree(base, broken)
    weights = broken / "model.safetensors"
    tensors = load_file(weights)
    if breakage == "missing":
        tensors.pop(sorted(k for k in tensors if "lm_expert" in k)[0])
        save_file(tensors, weights, metadata={"format": "pt"})
        expected = "1 missing key(s) (model.vlm_with_expert.lm_expert"
    elif breakage == "unexpected":
        tensors["model.extra_head.weight"] = torch.zeros(2)
        save_file(tensors, weights, metadata={"format": "pt"})
        expected = "1 unexpected key(s) (model.extra_head.weight)"
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        expected = "truncated, corrupt or of another architecture"
    cfg = demo_env.config()
    with pytest.raises(KuavoError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
        load_policy(cfg.policy, SCHEMA, str(broken), torch.device("cpu"))
    assert str(weights) in str(info.value) and "\n" not in str(info.value)


def test_old_normalization_buffers_are_the_documented_exception(demo_env, base, tmp_path):
    old = tmp_path / "old_format"
    shutil.copytree(base, old)
    tensors = load_file(old / "model.safetensors")
    tensors["normalize_inputs.buffer_observation_state.mean"] = torch.zeros(6)
    save_file(tensors, old / "model.safetensors", metadata={"format": "pt"})
    cfg = demo_env.config()
    load_policy(cfg.policy, SCHEMA, str(old), torch.device("cpu"))


def test_a_conflicting_shape_setting_names_both_values(demo_env, base):
    cfg = demo_env.config(extra=["policy.max_action_dim=24"])
    with pytest.raises(KuavoError, match="policy.max_action_dim=24 .* max_action_dim=32"):
        load_policy(cfg.policy, SCHEMA, str(base), torch.device("cpu"))


def test_trainable_weights_are_fp32_from_a_bf16_backbone(demo_env, tiny, tmp_path):
    bf16 = bf16_backbone(tiny, tmp_path / "tiny_bf16")
    cfg = demo_env.config(extra=[f"policy.vlm_model_name={bf16}"])
    fresh = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    base = write_base(tmp_path / "base", bf16)
    from_base = load_policy(cfg.policy, SCHEMA, str(base), torch.device("cpu"))
    for policy in (fresh, from_base):
        dtypes = {p.dtype for p in policy.parameters() if p.requires_grad}
        assert dtypes == {torch.float32}
    saved = load_file(base / "model.safetensors")
    loaded = from_base.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # not rounded through bf16 on the way in


def test_trainable_weights_are_fp32_at_full_size(tmp_path):
    """The SmolVLM2-500M architecture stand-in (no weights), declared bf16 like the real config.

    Built without the random initialisation (transformers' `no_init_weights`, what `from_pretrained` does
    before loading): 450M parameters are still allocated in the config's dtype and cast, but the ~25 s of
    bf16 `normal_`/`uniform_` on the CPU that no assertion here reads are skipped."""
    sys.path.insert(0, str(REPO_ROOT))
    from transformers.initialization import no_init_weights

    from benchmarks.smolvlm2_architecture import write_architecture
    from kuavo_train.config.load import load_config

    arch = write_architecture(tmp_path / "arch", ["Pick up the part"])
    config = json.loads((arch / "config.json").read_text())
    for node in (config, config["text_config"], config["vision_config"]):
        node["dtype"] = "bfloat16"
    (arch / "config.json").write_text(json.dumps(config))
    cfg = load_config(
        overrides=[f"policy.vlm_model_name={arch}", "policy.pretrained_path=null", "policy.load_vlm_weights=false"]
    )
    with no_init_weights():
        policy = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    trainable = [p for p in policy.parameters() if p.requires_grad]
    assert sum(p.numel() for p in policy.parameters()) > 400_000_000
    assert {p.dtype for p in trainable} == {torch.float32}


def test_hub_ids_load_from_the_hf_cache_offline(demo_env, base, tiny, tmp_path):
    """`policy.pretrained_path=lerobot/smolvla_base` + the VLM's hub id, both only in an HF cache, HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hf" / "hub"
    put_in_hf_cache(cache, VLM_HUB_ID, tiny)
    put_in_hf_cache(cache, BASE_HUB_ID, base)
    output = tmp_path / "run"
    args = [a for a in demo_env.cli_args(TASK_FILES[0], output, FAST) if not a.startswith("policy.vlm_model_name=")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache)}
    result = subprocess.run(
        [
            sys.executable,
            "kuavo_train/train_smolvla_sequential.py",
            *args,
            f"policy.pretrained_path={BASE_HUB_ID}",
            f"policy.vlm_model_name={VLM_HUB_ID}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "start from: lerobot/smolvla_base" in result.stdout
    assert (
        json.loads((output / "task1_moving_grasp" / "best" / "config.json").read_text())["vlm_model_name"] == VLM_HUB_ID
    )
