from pathlib import Path

import pytest
import yaml

from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config
from kuavo_train.errors import KuavoError

TASKS_DIR = DEFAULT_CONFIG_DIR / "tasks"


def _task_yaml(name: str) -> dict:
    return yaml.safe_load((TASKS_DIR / f"{name}.yaml").read_text())


def test_defaults_follow_the_spec():
    cfg = load_config()
    # The stage-1 lr in every stage and no frozen VLM layers: the sim benchmark's choice (docs/benchmarks.md).
    assert [t.training.lr for t in cfg.tasks] == [1e-4] * 4 and cfg.policy.freeze_vlm_layers == 0
    assert [t.training.max_epoch for t in cfg.tasks] == [20, 25, 30, 35]
    assert cfg.stage == 1 and cfg.replay_mix() == {1: 1.0}
    assert cfg.replay_mix(4) == {1: 0.1, 2: 0.1, 3: 0.2, 4: 0.6}
    assert cfg.policy.chunk_size == 50 and cfg.policy.max_action_dim == 32
    assert cfg.training.batch_size == 16 and cfg.training.seed == 42
    # One source of truth: the instructions are the task files' own.
    assert [t.language_instruction for t in cfg.tasks] == [
        _task_yaml(Path(f).name)["language_instruction"] for f in cfg.curriculum
    ]


def test_the_guides_recipe_is_a_named_config_that_reproduces_it_exactly():
    """SPEC §1's table: lr 1e-4, 5e-5, 3e-5, 2e-5; 8 of 16 VLM layers frozen; replay at the same shares."""
    guide = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_seed_guide")
    base = load_config()
    assert [t.training.lr for t in guide.tasks] == [1e-4, 5e-5, 3e-5, 2e-5] and guide.policy.freeze_vlm_layers == 8
    assert [t.name for t in guide.tasks] == [t.name for t in base.tasks]
    assert [t.training.max_epoch for t in guide.tasks] == [20, 25, 30, 35]
    assert guide.sequential.use_replay_buffer and guide.sequential.stage_replay == base.sequential.stage_replay
    stage3 = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_seed_guide", ["task=tasks/seed_guide/task3_placement"])
    assert stage3.stage == 3 and stage3.task.training.lr == 3e-5 and stage3.task.dirname == "task3_placement"


def test_seed_style_task_override_and_task_fields():
    cfg = load_config(overrides=["task=tasks/task2_weighing", "task.data.root=/data/t2", "training.batch_size=8"])
    assert cfg.stage == 2 and cfg.task.name == "weighing"
    assert cfg.task.data.root == "/data/t2" and cfg.training.batch_size == 8
    assert cfg.tasks[0].data.root.endswith("task1/data/lerobot/1-400")


def test_replay_override_that_sums_to_one():
    cfg = load_config(
        overrides=[
            "task=tasks/task2_weighing",
            "sequential.stage2_replay.task1=0.3",
            "sequential.stage2_replay.task2=0.7",
        ]
    )
    assert cfg.replay_mix() == {1: 0.3, 2: 0.7}


def test_replay_off_switch():
    cfg = load_config(overrides=["task=tasks/task3_placement", "sequential.use_replay_buffer=false"])
    assert cfg.replay_mix() == {3: 1.0}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sequential.stage2_replay.task1=0.3"], "sequential.stage2_replay shares sum to 1.1"),
        (["training.batchsize=3"], "did you mean 'batch_size'"),
        (["training.batch_size=abc"], "training.batch_size"),
        (["training.batch_size=0"], "training.batch_size must be >= 1"),
        (["task.training.lr=-1"], "training.lr must be > 0"),
        (["task.training.lr=0"], "training.lr must be > 0"),
        (["task=tasks/nope"], "is not in the curriculum"),
        (["task.data.rot=/x"], "did you mean 'root'"),
        (["policy.freeze_vlm_layers=20"], "policy.freeze_vlm_layers must be in [0, num_vlm_layers=16]"),
        (["policy.n_action_steps=60"], "policy.n_action_steps"),
        (["training.mixed_precision=fp8"], "training.mixed_precision"),
        (["sequential.replay_strategy=magic"], "sequential.replay_strategy"),
        (["sequential.stage3_replay.task9=0.1"], "sequential.stage3_replay.task9"),
        (["data.roots.nosuchtask=/x"], "data.roots.nosuchtask"),
        (["+foo=1"], "unknown top-level config key"),
        (["task.stage=3"], "stage is 3 but the task is at position 1"),
        (["task.data.action_dim=40"], "exceeds policy.max_action_dim"),
        (["training.steps_per_epoch=0"], "training.steps_per_epoch"),
        (["data.video_backend=ffmpeg"], "data.video_backend must be one of auto, torchcodec, pyav, got 'ffmpeg'"),
    ],
)
def test_bad_config_values_give_one_line_errors(overrides, message):
    with pytest.raises(KuavoError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(KuavoError, match="not found"):
        load_config(tmp_path, "nope")


def test_five_task_curriculum_needs_no_code(tmp_path):
    import shutil

    config_dir = tmp_path / "policy"
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir)
    extra = _task_yaml("task1_moving_grasp") | {
        "id": 5,
        "name": "extra",
        "stage": 5,
        "language_instruction": "Wave at the camera",
    }
    (config_dir / "tasks" / "task5_extra.yaml").write_text("# @package _global_\n" + yaml.safe_dump(extra))
    cfg = load_config(
        config_dir,
        "smolvla_sequential_base",
        [
            "curriculum=[tasks/task1_moving_grasp,tasks/task2_weighing,tasks/task3_placement,tasks/task4_sorting,tasks/task5_extra]",
            "task=tasks/task5_extra",
            "+sequential.stage5_replay={task1: 0.1, task2: 0.1, task3: 0.1, task4: 0.1, task5: 0.6}",
        ],
    )
    assert cfg.stage == 5 and cfg.replay_mix()[5] == 0.6


def _override_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_text(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return str(value)


def test_every_documented_key_can_be_set_on_the_command_line():
    """A field of the schema that the base YAML lacks cannot be overridden (Hydra's struct mode): `kuavo-train
    keys` would list a key that `key=value` then refuses."""
    from kuavo_train.config.keys import config_keys

    cfg = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_base", ["task=tasks/task1_moving_grasp"])
    overrides = [
        f"{doc.key}={_override_text(doc.value)}"
        for doc in config_keys(cfg)
        if "<" not in doc.key and doc.key not in ("task", "curriculum") and not isinstance(doc.value, dict)
    ]
    assert len(overrides) > 60
    try:  # all at once (one composition); on a refusal, one by one to name each refused key
        load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_base", ["task=tasks/task1_moving_grasp", *overrides])
    except KuavoError:
        refused = []
        for override in overrides:
            try:
                load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_base", ["task=tasks/task1_moving_grasp", override])
            except KuavoError as exc:
                refused.append(f"{override}: {exc}")
        assert not refused, "\n".join(refused)


def test_a_shorter_curriculum_drops_the_roots_of_the_tasks_it_leaves_out():
    """Hydra's ~key deletes a YAML entry: the sim benchmark's 2-task smoke run removes the other tasks' roots."""
    overrides = ["curriculum=[tasks/metaworld/task1_reach,tasks/metaworld/task2_faucet_open]"]
    with pytest.raises(KuavoError, match="data.roots.pick_place: no task of that name"):
        load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_metaworld", overrides)
    cfg = load_config(
        DEFAULT_CONFIG_DIR,
        "smolvla_sequential_metaworld",
        [*overrides, "~data.roots.pick_place", "~data.roots.drawer_open"],
    )
    assert [t.name for t in cfg.tasks] == ["reach", "faucet_open"] and sorted(cfg.data.roots) == [
        "faucet_open",
        "reach",
    ]
    with pytest.raises(KuavoError, match="not of the form key=value"):
        load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_metaworld", ["data.roots.reach"])


def test_the_sim_pretraining_config_shares_the_curriculum_settings_but_no_task():
    curriculum = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_metaworld")
    pretrain = load_config(DEFAULT_CONFIG_DIR, "smolvla_sim_pretrain")
    assert len(pretrain.tasks) == 8
    assert not {t.name for t in pretrain.tasks} & {t.name for t in curriculum.tasks}
    assert pretrain.policy.num_vlm_layers == curriculum.policy.num_vlm_layers
    assert pretrain.training.batch_size == curriculum.training.batch_size


def test_the_lora_per_task_recipe_is_a_named_config():
    """The benchmarks' lora_per_task strategy on the real curriculum: per-task adapters, no replay, 10x lr."""
    lora = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_lora_per_task")
    base = load_config()
    assert lora.policy.peft.mode == "per_task" and not lora.sequential.use_replay_buffer
    assert [t.training.lr for t in lora.tasks] == pytest.approx([10 * t.training.lr for t in base.tasks])
    assert [t.name for t in lora.tasks] == [t.name for t in base.tasks]
