"""Which library decodes mp4 camera frames, and keeping its decoders per process.

torchcodec decodes our 480x640 frames about 3x faster than pyav (docs/performance.md) but needs
FFmpeg's shared libraries on the machine; pyav ships its own FFmpeg and works everywhere.
lerobot's default only checks that the torchcodec package is installed, so on a machine without
FFmpeg it fails at the first frame with a long traceback; ``auto`` tries to load it first.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from kuavo_train.config.schema import VIDEO_BACKENDS  # noqa: F401  (re-exported for callers of this module)
from kuavo_train.errors import KuavoError, first_line

logger = logging.getLogger(__name__)


@functools.cache
def torchcodec_problem() -> str | None:
    """Why torchcodec cannot decode here (first line of the error), or None when it can."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads FFmpeg)
    except Exception as error:  # ImportError, OSError or RuntimeError, depending on what is missing
        return first_line(error)
    return None


def resolve_video_backend(requested: str) -> str:
    """The backend to hand to lerobot for ``data.video_backend=requested`` (one of VIDEO_BACKENDS)."""
    if requested == "pyav":
        return "pyav"
    problem = torchcodec_problem()
    if problem is None:
        return "torchcodec"
    if requested == "torchcodec":
        raise KuavoError(
            f"data.video_backend=torchcodec, but torchcodec cannot load FFmpeg ({problem}); install FFmpeg's "
            "shared libraries (Debian/Ubuntu: apt-get install ffmpeg) or set data.video_backend=pyav"
        )
    logger.info(
        "video decoding with pyav: torchcodec cannot load FFmpeg (%s); install FFmpeg for ~3x faster decoding", problem
    )
    return "pyav"


def forget_parent_decoders() -> None:
    """In a forked child: drop the torchcodec decoders lerobot cached in the parent.

    lerobot keeps open decoders in a module-level cache; a forked loader worker would share their
    file offsets with the parent and its sibling workers, so concurrent seeks could read each
    other's bytes. ``keep_decoders_per_process`` registers it for every fork of this process.
    """
    video_utils = sys.modules.get("lerobot.datasets.video_utils")
    if video_utils is not None:
        video_utils._default_decoder_cache = video_utils.VideoDecoderCache()


@functools.cache
def keep_decoders_per_process() -> None:
    """Register ``forget_parent_decoders`` to run in every child forked from now on (once)."""
    os.register_at_fork(after_in_child=forget_parent_decoders)
