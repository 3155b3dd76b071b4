"""Does the anti-forgetting recipe work? The demo curriculum under every strategy of
benchmarks/strategies.py (naive, replay, seed_guide, replay_freeze, joint), same budget: every
stage gets the same number of optimizer steps; the joint run gets their sum.

Prints each strategy's final per-task validation loss (the last model on every task's held-out
episodes), their average and the backward transfer (BWT, positive = forgetting), and writes
``ablation_results.json`` under the output dir.

    .venv/bin/python benchmarks/forgetting_ablation.py [--out outputs/ablation] [--steps 60] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.strategies import STRATEGIES, equal_budget, final_row, run_strategy  # noqa: E402
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config  # noqa: E402
from kuavo_train.demo.assets import ensure_demo_assets  # noqa: E402

DEMO_CONFIG = "smolvla_sequential_demo"


def format_table(all_results: dict[str, dict]) -> str:
    tasks = next(iter(all_results.values()))["task_order"]
    header = "| strategy | " + " | ".join(f"task {t}" for t in tasks) + " | average | BWT |"
    lines = [header, "|" + "---|" * (len(tasks) + 3)]
    for name, results in all_results.items():
        row, average, bwt = final_row(results)
        cells = " | ".join(f"{row[str(t)]:.3f}" for t in tasks)
        lines.append(f"| {name} | {cells} | {average:.3f} | {'-' if bwt is None else f'{bwt:+.3f}'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "ablation")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per epoch of every stage")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per stage")
    parser.add_argument("--only", nargs="*", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args()
    budget = equal_budget(args.epochs, args.steps)
    ensure_demo_assets(load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG))
    all_results, seconds = {}, {}
    for name in args.only:
        started = time.perf_counter()
        all_results[name] = run_strategy(name, DEFAULT_CONFIG_DIR, DEMO_CONFIG, args.out, budget)
        seconds[name] = time.perf_counter() - started
    table = format_table(all_results)
    print("\nFinal validation loss of the last model on every task (lower is better); BWT > 0 = forgetting")
    print(table)
    print("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()))
    (args.out / "ablation_results.json").write_text(
        json.dumps({"results": all_results, "seconds": seconds, "table": table}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
