"""Data keys shared across the project (lerobot's names, plus the ones we add to each sample)."""

from lerobot.utils.constants import ACTION, OBS_STATE

STATE = OBS_STATE  # "observation.state"
ACTION = ACTION  # "action"
CAMERA_PREFIX = "observation.images."
TASK = "task"  # the language instruction string of a sample
ACTION_IS_PAD = "action_is_pad"  # (T,) bool: time steps past the episode end
# (D,) bool: action dims that belong to the sample's task (False = zero padding up to the union size).
ACTION_DIM_MASK = "action_dim_mask"
TASK_ID = "task_id"  # int: which curriculum task a sample comes from
SAMPLE_SEED = "sample_seed"  # int: fixes a validation sample's flow-matching noise and time
# Cached image embeddings of a camera in a sample (data.feature_cache): "<level>_features.<camera>",
# level "vision" (SigLIP's output) or "connector" (after SmolVLM's connector); images are then absent.
CACHED_FEATURES_SUFFIX = "_features."


def cached_features_key(level: str, camera: str) -> str:
    return f"{level}{CACHED_FEATURES_SUFFIX}{camera}"


def parse_cached_features_key(key: str) -> tuple[str, str] | None:
    """(level, camera) of a cached-embedding key, None for any other key."""
    level, sep, camera = key.partition(CACHED_FEATURES_SUFFIX)
    return (level, camera) if sep and camera.startswith(CAMERA_PREFIX) else None
