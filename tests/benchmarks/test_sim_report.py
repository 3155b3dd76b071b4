"""docs/benchmarks.md writer: tables from a summary, heatmaps, and hand-written notes kept across reruns."""

from __future__ import annotations

from benchmarks.sim.report import NOTES_MARKER, final_table, write_docs


def _summary(success_after_4: float) -> dict:
    rows = {stage: {task: (1.0 if task == stage else 0.0) for task in range(1, 5)} for stage in range(1, 5)}
    rows[4] = {1: success_after_4, 2: 0.5, 3: 0.25, 4: 1.0}
    losses = {str(stage): {str(task): 0.1 * task for task in range(1, 5)} for stage in range(1, 5)}
    result = {"strategy": "default", "success_matrix": rows, "average_success": sum(rows[4].values()) / 4,
              "bwt_success": -0.5, "optimizer_steps": 900, "forgetting_success": {1: 0.25, 2: 0.5, 3: 0.75}, "loss_matrix": losses, "seconds": {"train": 1.0, "closed_loop": 2.0}}
    return {"command": "benchmarks/sim/run.py --docs", "machine": "test", "seconds": {"demos": 1.0, "total": 60.0},
            "budget": {"episodes": 4, "validation_episodes": 1, "epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "eval_episodes": 1},
            "strategies": {"default": result}}


def test_final_table_shows_the_last_row_average_and_bwt():
    table = final_table(_summary(0.75))
    assert "| default | 75% | 50% | 25% | 100% | 62% | -50 pts | reach 25, push 50, pick_place 75 pts | 0.250 | 900 |" in table


def test_rewriting_the_docs_keeps_the_notes_below_the_marker(tmp_path):
    page = write_docs(_summary(0.75), tmp_path)
    assert (tmp_path / "img" / "sim_success_matrices.png").stat().st_size > 5000
    page.write_text(page.read_text() + "\n## Findings\nwritten by a person\n")
    write_docs(_summary(0.25), tmp_path)
    text = page.read_text()
    assert "| default | 25% |" in text and "| default | 75% |" not in text
    assert text.count(NOTES_MARKER) == 1 and text.endswith("## Findings\nwritten by a person\n")
