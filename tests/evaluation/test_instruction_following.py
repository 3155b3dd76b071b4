import json
import math

import pytest

from kuavo_train.evaluation.instruction_following import InstructionMatrix, evaluate_main
from kuavo_train.layout import RunPaths
from tests.conftest import copy_run


def test_margins_and_diagonal():
    matrix = InstructionMatrix(
        instructions=[1, 2], tasks=[1, 2], mse=[[0.1, 0.5], [0.4, 0.2]], groups={}, walking_mse=None, latency_ms={}
    )
    assert matrix.margins() == {1: 0.30000000000000004, 2: 0.3}
    assert matrix.to_dict()["diagonal_lowest"] is True
    matrix.mse[1][1] = 0.9
    assert matrix.to_dict()["diagonal_lowest"] is False


def test_evaluate_command_writes_the_matrix(four_stage_run, demo_env, tmp_path):
    run = copy_run(four_stage_run.root, tmp_path)  # evaluate writes into the run dir
    checkpoint = RunPaths(run).stage(four_stage_run.stage(4).stage_dir.name).best  # the final multi-task model
    code = evaluate_main(
        [
            str(checkpoint),
            "--config-name",
            "smolvla_sequential_demo",
            "--tasks",
            "1",
            "4",
            "--max-frames",
            "4",
            "--device",
            "cpu",
            *demo_env.overrides,
        ]
    )
    assert code == 0

    result = json.loads(RunPaths(run).instruction_matrix.read_text())
    assert result["checkpoint"] == str(checkpoint.resolve())
    assert result["instructions"] == [1, 2, 3, 4] and result["tasks"] == [1, 4]
    mse = result["mse"]
    assert len(mse) == 4 and all(len(row) == 2 and all(math.isfinite(v) and v > 0 for v in row) for row in mse)
    assert set(result["groups"]) == {"left_arm", "left_claw", "right_arm", "right_claw"}
    assert all(len(rows) == 4 and all(len(row) == 2 for row in rows) for rows in result["groups"].values())
    assert result["walking_mse"] is not None and result["walking_mse"] > 0  # task 4's 4 walking dims, own instruction
    assert result["latency_ms"]["per_chunk"] > 0 and result["latency_ms"]["per_select_action"] > 0
    # Margins: per evaluated task, the best wrong instruction's error minus the right one's (row = instruction id).
    expected = {}
    for col, task in enumerate(result["tasks"]):
        right = mse[task - 1][col]
        expected[str(task)] = min(mse[row][col] for row in range(4) if row != task - 1) - right
    assert result["margins"].keys() == expected.keys()
    for task, margin in expected.items():
        assert result["margins"][task] == pytest.approx(margin, abs=1e-12)
    assert result["margin"] == pytest.approx(min(expected.values()), abs=1e-12)
    assert result["diagonal_lowest"] is all(m > 0 for m in expected.values())
