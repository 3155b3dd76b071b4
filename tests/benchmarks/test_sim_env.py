"""The simulator side: seeded resets, rendering, expert demos as a LeRobot dataset, the closed-loop scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("sim_available")


def test_reset_is_deterministic_per_seed_and_renders_the_scene():
    from benchmarks.sim.tasks import SIM_TASKS, STATE_DIM, SimEnv

    env = SimEnv(SIM_TASKS[1], image_size=32)
    first, image = env.reset(7).copy(), env.render()
    other = env.reset(8).copy()
    again = env.reset(7).copy()
    env.close()
    assert first.shape == (STATE_DIM,)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other), "different seeds must move the puck/goal"
    assert np.abs(first[-3:]).sum() > 0, "the goal must be visible in the state"
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and image.std() > 10


def test_compact_state_drops_the_previous_frame_and_keeps_the_goal():
    from benchmarks.sim.tasks import SIM_TASKS, SimEnv

    env = SimEnv(SIM_TASKS[0], image_size=32, compact_state=True)
    obs = env.reset(3).copy()
    state = env.state
    env.close()
    assert state.shape == (21,) and state.shape[0] <= 32  # fits the pretrained SmolVLA's max_state_dim
    np.testing.assert_array_equal(state, np.concatenate([obs[:18], obs[36:]]))


class ExpertAsPolicy:
    """Stands in for SmolVLAPolicyWrapper: chunks of one expert action per env (checks the scorer, not a model)."""

    def __init__(self, envs_by_state):
        self.envs_by_state = envs_by_state

    def noise_shape(self, batch_size):
        return (batch_size, 1, 4)

    def predict_action_chunk(self, batch, noise=None):
        from benchmarks.sim.tasks import CAMERA_KEY

        assert batch[CAMERA_KEY].dtype == np.uint8 and batch["task"][0]
        actions = [self.envs_by_state(state).expert_action() for state in batch["observation.state"]]
        return torch.tensor(np.stack(actions))[:, None, :]


def test_closed_loop_scores_the_expert_as_solving_and_a_still_arm_as_failing(monkeypatch):
    from benchmarks.sim import closed_loop
    from benchmarks.sim.tasks import SIM_TASKS, SimEnv

    created = []
    monkeypatch.setattr(closed_loop, "SimEnv", lambda *args: created.append(SimEnv(*args)) or created[-1])
    expert = ExpertAsPolicy(lambda state: next(e for e in created if np.array_equal(e.state, state)))
    outcomes = closed_loop.evaluate_policy(expert, SIM_TASKS[0], episodes=2, image_size=32)
    assert closed_loop.success_rate(outcomes) == 1.0
    assert all(0 < o.steps < SIM_TASKS[0].max_steps for o in outcomes)

    class StillArm(ExpertAsPolicy):
        def predict_action_chunk(self, batch, noise=None):
            return torch.zeros(len(batch["task"]), 4, 4)

    still = closed_loop.evaluate_policy(StillArm(None), SIM_TASKS[0], episodes=1, image_size=32, max_steps=12)
    assert closed_loop.success_rate(still) == 0.0 and still[0].steps == 12


def test_expert_demos_are_a_lerobot_dataset_our_checker_accepts(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from benchmarks.sim.demos import DemoSpec, write_task_demos
    from benchmarks.sim.tasks import ACTION_DIM, CAMERA_KEY, SIM_TASKS, STATE_DIM
    from kuavo_train.data.check import check_dataset

    root = write_task_demos(SIM_TASKS[0], tmp_path / "reach", DemoSpec(episodes=2, image_size=32))
    dataset = LeRobotDataset("sim/reach", root=root)
    assert dataset.meta.total_episodes == 2
    frame = dataset[0]
    assert frame["observation.state"].shape == (STATE_DIM,) and frame["action"].shape == (ACTION_DIM,)
    assert frame[CAMERA_KEY].shape == (3, 32, 32)
    assert frame["task"] == SIM_TASKS[0].instruction
    report = check_dataset(
        root,
        expected_cameras=[CAMERA_KEY],
        expected_state_dim=STATE_DIM,
        expected_action_dim=ACTION_DIM,
        instruction=SIM_TASKS[0].instruction,
    )
    assert not report.problems, report.problems
    # A second call reuses the complete set; other settings on the same dir are refused.
    assert write_task_demos(SIM_TASKS[0], root, DemoSpec(episodes=2, image_size=32)) == root
    with pytest.raises(FileExistsError, match="delete it or choose another --out"):
        write_task_demos(SIM_TASKS[0], root, DemoSpec(episodes=3, image_size=32))


def test_a_dir_the_writer_did_not_start_is_refused_and_left_alone(tmp_path):
    from benchmarks.sim.demos import DemoSpec, write_task_demos
    from benchmarks.sim.tasks import SIM_TASKS

    foreign = tmp_path / "reach"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="delete it or choose another --out"):
        write_task_demos(SIM_TASKS[0], foreign, DemoSpec(episodes=1, image_size=32))
    assert (foreign / "mine.txt").read_text() == "user data"


def test_reach_and_pick_place_share_one_scene_so_only_the_instruction_tells_them_apart():
    from benchmarks.sim.tasks import LANGUAGE_PAIR, SIM_TASKS, SimEnv

    reach, pick = (SimEnv(next(t for t in SIM_TASKS if t.name == name), image_size=32) for name in LANGUAGE_PAIR)
    for seed in (0, 5, 1_000_003):
        np.testing.assert_array_equal(reach.reset(seed), pick.reset(seed))
    assert np.abs(reach.render().astype(int) - pick.render()).mean() < 1.0  # the same picture
    reach.close()
    pick.close()


@pytest.mark.parametrize("name", ["reach", "pick_place"])
def test_the_other_behaviour_test_matches_the_other_tasks_success(name):
    """Run each pair task's expert: the other task's test (OTHER_BEHAVIOUR) must say 'the other task was done' when
    the expert of the OTHER task succeeds, and not when this task's own expert succeeds."""
    from benchmarks.sim.tasks import LANGUAGE_PAIR, OTHER_BEHAVIOUR, SIM_TASKS, SimEnv

    other_name = next(n for n in LANGUAGE_PAIR if n != name)
    own_env = SimEnv(next(t for t in SIM_TASKS if t.name == name), image_size=32)
    other_env = SimEnv(next(t for t in SIM_TASKS if t.name == other_name), image_size=32)
    for env, expect in ((other_env, True), (own_env, False)):
        env.reset(3)
        seen = False
        for _ in range(env.task.max_steps):
            solved = env.step(env.expert_action())
            seen = seen or OTHER_BEHAVIOUR[name](env.obs)
            if solved:
                break
        assert solved, f"the {env.task.name} expert must solve seed 3"
        assert seen == expect, f"under the {name} instruction, the {env.task.name} expert's rollout"
        env.close()
