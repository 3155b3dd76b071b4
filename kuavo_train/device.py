"""Which device a stage runs on, and why: `training.device` auto/cpu/cuda/cuda:N."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from kuavo_train.errors import KuavoError, first_line


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str  # said in the stage header, e.g. "auto: CUDA unavailable (no NVIDIA driver found)"


@functools.cache
def cuda_problem() -> str | None:
    """Why CUDA cannot be used here (one line), or None when it can."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()  # raises with the driver's story: none found, too old for this build, ...
    except Exception as error:  # RuntimeError/AssertionError depending on the cause
        return first_line(error).split(". Please")[0]  # drop the generic advice that follows the cause
    return f"no usable GPU found (torch {torch.__version__} built for CUDA {torch.version.cuda})"


def choose_device(requested: str | torch.device, key: str = "training.device") -> DeviceChoice:
    """``auto`` = CUDA when usable, else CPU (the reason is kept); ``cuda[:N]`` fails fast when unusable.
    ``key`` names the setting in error messages."""
    name = str(requested)
    if name == "auto":
        problem = cuda_problem()
        if problem is None:
            return DeviceChoice(torch.device("cuda"), f"auto: {torch.cuda.get_device_name(0)}")
        return DeviceChoice(torch.device("cpu"), f"auto: CUDA unavailable ({problem})")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise KuavoError(f"{key}={name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type != "cuda":
        return DeviceChoice(device, f"{name}: as configured")
    problem = cuda_problem()
    if problem is not None:
        raise KuavoError(
            f"{key}={name} but CUDA is unavailable: {problem}; fix the driver or torch build "
            f"(check `nvidia-smi` and torch.version.cuda={torch.version.cuda}) or use {key}=cpu"
        )
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise KuavoError(
            f"{key}={name} but this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 .. cuda:N-1 or auto"
        )
    return DeviceChoice(device, f"{name}: {torch.cuda.get_device_name(index)}")


def resolve_device(requested: str | torch.device, key: str = "training.device") -> torch.device:
    return choose_device(requested, key).device


def use_fast_matmul(device: torch.device) -> None:
    """On CUDA, let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and newer).

    The fp32 matmuls left outside bf16 autocast (and all of them with training.mixed_precision=no) then run on
    tensor cores with a 10-bit mantissa, as lerobot-train sets it (lerobot/scripts/lerobot_train.py). A no-op
    on the CPU.
    """
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
