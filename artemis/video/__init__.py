"""Reading videos: one :class:`VideoSource` protocol, :func:`open_video`, decoders and frame sampling.

A video file or frame folder opens a :class:`VideoReader` (decord, PyAV, OpenCV or a folder of frames), a
list of image paths an :class:`ImageListVideo`, decoded frames an :class:`ArrayVideo`; :func:`open_video`
picks among them and :func:`opened` closes what it opened.
"""

from artemis.video.reader import DEFAULT_FPS, IMAGE_SUFFIXES, Backend, VideoReader, available_backends
from artemis.video.sampling import SamplingMode, sample_indices
from artemis.video.source import ArrayVideo, ImageListVideo, VideoInput, VideoSource, open_video, opened

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "ArrayVideo",
    "Backend",
    "ImageListVideo",
    "SamplingMode",
    "VideoInput",
    "VideoReader",
    "VideoSource",
    "available_backends",
    "open_video",
    "opened",
    "sample_indices",
]
