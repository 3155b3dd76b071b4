import pytest

from kuavo_train.data import video
from kuavo_train.errors import KuavoError


def test_pyav_is_taken_as_asked(monkeypatch):
    monkeypatch.setattr(video, "torchcodec_problem", lambda: None)
    assert video.resolve_video_backend("pyav") == "pyav"


@pytest.mark.parametrize("requested", ["auto", "torchcodec"])
def test_torchcodec_when_it_loads(monkeypatch, requested):
    monkeypatch.setattr(video, "torchcodec_problem", lambda: None)
    assert video.resolve_video_backend(requested) == "torchcodec"


def test_auto_falls_back_to_pyav_without_ffmpeg(monkeypatch):
    monkeypatch.setattr(video, "torchcodec_problem", lambda: "libavutil.so.59: cannot open shared object file")
    assert video.resolve_video_backend("auto") == "pyav"


def test_asking_for_torchcodec_without_ffmpeg_names_the_fix(monkeypatch):
    monkeypatch.setattr(video, "torchcodec_problem", lambda: "libavutil.so.59: cannot open shared object file")
    with pytest.raises(
        KuavoError, match=r"data.video_backend=torchcodec.*libavutil.*apt-get install ffmpeg.*video_backend=pyav"
    ):
        video.resolve_video_backend("torchcodec")
