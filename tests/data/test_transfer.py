import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from kuavo_train.data.transfer import SharedBufferLoader, pack_collate


def sample(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    return {
        "observation.images.head": torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=g),
        "observation.state": torch.randn(3, generator=g),  # 12 bytes: the next tensor needs padding
        "action_is_pad": torch.rand(5, generator=g) > 0.5,
        "index": torch.tensor(i),
        "task": f"instruction {i % 2}",
        "task_id": i % 3,
        "weight": 0.5 * i,
    }


class Samples(Dataset):
    def __len__(self):
        return 11

    def __getitem__(self, i):
        return sample(i)


def assert_same_batch(ours: dict, reference: dict) -> None:
    assert list(ours) == list(reference)  # same keys in the same order
    for key, value in reference.items():
        if isinstance(value, torch.Tensor):
            assert ours[key].dtype == value.dtype, key
            assert torch.equal(ours[key], value), key
        else:
            assert ours[key] == value, key


def test_packed_batch_unpacks_to_what_default_collate_gives():
    samples = [sample(i) for i in range(4)]
    assert_same_batch(pack_collate(samples).unpack(), default_collate(samples))


def test_the_whole_batch_is_one_buffer():
    packed = pack_collate([sample(i) for i in range(4)])
    batch = packed.unpack()
    pointer = packed.buffer.untyped_storage().data_ptr()
    for key in ("observation.images.head", "observation.state", "action_is_pad", "index", "task_id", "weight"):
        assert batch[key].untyped_storage().data_ptr() == pointer, key


def test_workers_deliver_the_same_batches_as_a_plain_loader():
    plain = list(DataLoader(Samples(), batch_size=4, num_workers=0))
    shared = list(SharedBufferLoader(Samples(), batch_size=4, num_workers=2, persistent_workers=True))
    assert len(shared) == len(plain) == 3
    for ours, reference in zip(shared, plain, strict=True):
        assert_same_batch(ours, reference)


def test_shared_memory_need_and_the_docker_advice():
    from kuavo_train.data.schema import FeatureSchema, TaskFeatures
    from kuavo_train.data.transfer import batch_bytes, shared_memory_need, shared_memory_problem

    kuavo = FeatureSchema(
        cameras={f"observation.images.{c}": (3, 480, 640) for c in ("head_cam_h", "wrist_cam_l", "wrist_cam_r")},
        state_dim=16,
        action_dim=20,
        fps=10.0,
        tasks=(TaskFeatures(1, "a", "do a", 16, 16),),
    )
    assert 44e6 < batch_bytes(kuavo, 16, 50) < 45e6  # the README's "about 44 MB"
    need = shared_memory_need(kuavo, 16, 50, num_workers=4)
    assert need == 17 * batch_bytes(kuavo, 16, 50) and shared_memory_need(kuavo, 16, 50, num_workers=0) == 0
    problem = shared_memory_problem(need, free=64 * 2**20)
    assert "/dev/shm has 64 MiB free" in problem and "--shm-size=2g" in problem and "training.num_workers" in problem
    assert shared_memory_problem(need, free=8 * 2**30) is None and shared_memory_problem(need, free=None) is None
    # With the feature cache a sample carries embeddings instead of images: SigLIP-level ones are larger.
    siglip = 3 * 1024 * 768 * 4
    cached = shared_memory_need(kuavo, 16, 50, num_workers=4, camera_bytes=siglip)
    images = 3 * (3 * 480 * 640)  # three uint8 cameras
    assert cached - need == 17 * 16 * (siglip - images)
    assert shared_memory_need(kuavo, 16, 50, num_workers=4, camera_bytes=1000) == need  # smaller: images count


def test_a_stage_refuses_to_start_when_dev_shm_is_too_small(demo_env, tmp_path, monkeypatch):
    import pytest

    from kuavo_train.curriculum import stage
    from kuavo_train.errors import KuavoError

    monkeypatch.setattr(stage, "shared_memory_free", lambda: 1024)
    cfg = demo_env.config(extra=["training.num_workers=2", "training.epochs_override=1"], output=tmp_path / "run")
    with pytest.raises(KuavoError, match="--shm-size"):
        stage.run_stage(cfg)
    assert not (tmp_path / "run" / "task1_moving_grasp" / "best").exists()
