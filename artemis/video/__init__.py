"""Video reading (decord, PyAV, OpenCV or a folder of frames) and frame sampling."""

from artemis.video.reader import DEFAULT_FPS, IMAGE_SUFFIXES, Backend, VideoReader, available_backends
from artemis.video.sampling import SamplingMode, sample_indices

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "Backend",
    "SamplingMode",
    "VideoReader",
    "available_backends",
    "sample_indices",
]
