import json

from kuavo_train.evaluation.instruction_following import InstructionMatrix, evaluate_main


def test_margins_and_diagonal():
    matrix = InstructionMatrix(instructions=[1, 2], tasks=[1, 2], mse=[[0.1, 0.5], [0.4, 0.2]], groups={},
                               walking_mse=None, latency_ms={})
    assert matrix.margins() == {1: 0.30000000000000004, 2: 0.3}
    assert matrix.to_dict()["diagonal_lowest"] is True
    matrix.mse[1][1] = 0.9
    assert matrix.to_dict()["diagonal_lowest"] is False


def test_evaluate_command_writes_the_matrix(seed_stage1, demo_env, capsys):
    output, _ = seed_stage1
    code = evaluate_main([str(output / "task1_moving_grasp" / "best"), "--config-name", "smolvla_sequential_demo",
                          "--tasks", "1", "4", "--max-frames", "4", "--device", "cpu", *demo_env.overrides])
    assert code == 0
    result = json.loads((output / "instruction_matrix.json").read_text())
    assert result["instructions"] == [1, 2, 3, 4] and result["tasks"] == [1, 4]
    assert len(result["mse"]) == 4 and all(len(row) == 2 for row in result["mse"])
    assert set(result["groups"]) == {"left_arm", "left_claw", "right_arm", "right_claw"}
    assert result["walking_mse"] is not None and result["latency_ms"]["per_chunk"] > 0
    assert "diagonal lowest for every task" in capsys.readouterr().out
