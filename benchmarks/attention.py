"""SDPA vs eager attention of SmolVLA's VLM + expert at full size: seconds per training step and peak memory.

One child process per attention kind builds SmolVLA on the SmolVLM2-500M architecture (random weights, the
base config's 16 VLM layers and freezing recipe), then times forward + backward of the training loss on one
fixed batch (3 cameras, 16-dim state, 20-dim action chunk of 50) and reports its peak resident memory (CPU)
or peak allocated memory (CUDA). Both kinds see the same weights, batch, noise and time.

    .venv/bin/python benchmarks/smolvlm2_architecture.py /tmp/smolvlm2_arch
    .venv/bin/python benchmarks/attention.py --vlm-model-name /tmp/smolvlm2_arch [--recipe seed|expert_only]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

KINDS = ("eager", "sdpa")
CAMERAS = ("observation.images.head_cam_h", "observation.images.wrist_cam_l", "observation.images.wrist_cam_r")


def build_policy_and_batch(args, device):
    import numpy as np
    import torch

    from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config
    from kuavo_train.data.schema import FeatureSchema, TaskFeatures
    from kuavo_train.policy.factory import load_policy, make_processors

    vlm, batch_size, image_hw = args.vlm_model_name, args.batch_size, tuple(args.image_hw)
    overrides = [f"policy.vlm_model_name={vlm}", "policy.pretrained_path=null", "policy.load_vlm_weights=false"]
    if args.recipe == "expert_only":
        overrides.append("policy.train_expert_only=true")
    cfg = load_config(DEFAULT_CONFIG_DIR, args.config_name, overrides)
    schema = FeatureSchema(
        cameras={key: (3, *image_hw) for key in CAMERAS},
        state_dim=16,
        action_dim=20,
        fps=10.0,
        tasks=(TaskFeatures(1, "grasp", "Pick up the package from the conveyor belt", 16, 20),),
    )
    torch.manual_seed(0)
    policy = load_policy(cfg.policy, schema, None, device)
    stats = {
        key: {
            "mean": np.zeros(d, np.float32),
            "std": np.ones(d, np.float32),
            "min": -np.ones(d, np.float32),
            "max": np.ones(d, np.float32),
        }
        for key, d in (("observation.state", 16), ("action", 20))
    }
    preprocessor, _ = make_processors(policy, stats)
    generator = torch.Generator().manual_seed(0)
    chunk = policy.config.chunk_size
    raw = {key: torch.rand(batch_size, 3, *image_hw, generator=generator) for key in CAMERAS}
    raw |= {
        "observation.state": torch.randn(batch_size, 16, generator=generator),
        "action": torch.randn(batch_size, chunk, 20, generator=generator),
        "action_is_pad": torch.zeros(batch_size, chunk, dtype=torch.bool),
        "task": ["Pick up the package from the conveyor belt"] * batch_size,
    }
    return policy, preprocessor(raw)


def child(args) -> dict:
    import torch

    from kuavo_train.policy.attention import use_attention
    from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss

    device = torch.device(args.device)
    policy, batch = build_policy_and_batch(args, device)
    use_attention(policy, args.child)
    policy.train()
    mask = torch.zeros(args.batch_size, 20, dtype=torch.bool, device=device)
    mask[:, :16] = True
    seeds = torch.arange(args.batch_size)
    noise, time_ = fixed_noise_and_time(seeds, policy.config.chunk_size, policy.config.max_action_dim, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        policy.zero_grad(set_to_none=True)
        loss = per_sample_loss(policy, batch, mask, noise=noise, time=time_).mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"kind": args.child, "loss": float(loss), "step_s": sorted(times)[len(times) // 2], "peak_mib": peak}


def run_kind(kind: str, argv: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *argv, "--child", kind], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vlm-model-name", required=True, help="SmolVLM2 architecture dir (smolvlm2_architecture.py)")
    p.add_argument("--recipe", choices=["seed", "expert_only"], default="seed", help="what trains (default seed)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--image-hw", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--steps", type=int, default=3, help="measured steps (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--config-name", default="smolvla_sequential_base", help="config of the policy settings")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    results = {kind: run_kind(kind, argv) for kind in KINDS}
    memory = "peak allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"SmolVLA full size, recipe {args.recipe}, batch {args.batch_size}, cameras 3 x {args.image_hw}, "
        f"{args.device}; median of {args.steps} forward+backward steps"
    )
    print(f"{'attention':<10} {'s/step':>8} {memory + ' MiB':>20} {'loss':>10}")
    for kind, r in results.items():
        print(f"{kind:<10} {r['step_s']:>8.2f} {r['peak_mib']:>20.0f} {r['loss']:>10.5f}")
    eager, sdpa = results["eager"], results["sdpa"]
    speedup, extra = eager["step_s"] / sdpa["step_s"], sdpa["peak_mib"] - eager["peak_mib"]
    drift = sdpa["loss"] - eager["loss"]
    print(f"ratio sdpa/eager: speed x{speedup:.2f}, memory {extra:+.0f} MiB, loss difference {drift:+.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
