"""Draw tracks and captions on frames, and write frames to an mp4 or GIF file.

Frames are ``(H, W, 3)`` uint8 RGB throughout, as :class:`artemis.video.VideoReader` returns them;
the conversion to OpenCV's BGR happens only where OpenCV encodes. An ``.mp4`` is H.264 (yuv420p), which
browsers play, when PyAV can encode it (:func:`h264_available`), and OpenCV's mp4v otherwise.
"""

from __future__ import annotations

import functools
import logging
import os
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artemis.errors import VideoError
from artemis.io import atomic_path
from artemis.video.source import VideoSource

__all__ = ["PALETTE", "draw_box", "draw_caption", "draw_legend", "draw_track", "h264_available", "write_video"]

logger = logging.getLogger(__name__)

# Distinct RGB colours, one per track, cycled.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64),
    (64, 200, 255),
    (255, 200, 0),
    (120, 255, 120),
    (255, 100, 255),
    (255, 150, 60),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX

# Container -> OpenCV FourCC. mp4v is the codec every OpenCV build can write without extra libraries.
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


def _font_scale(height: int) -> float:
    # Readable from 144 px (QCIF) to 1080 px frames.
    return max(0.35, min(1.2, height / 600))


def draw_box(
    frame: np.ndarray,
    box_xyxy: Sequence[float] | np.ndarray,
    *,
    color: tuple[int, int, int] = PALETTE[0],
    label: str | None = None,
    thickness: int = 2,
) -> np.ndarray:
    """Draw one pixel ``xyxy`` box (and a filled label tag above it) on ``frame`` in place."""
    x1, y1, x2, y2 = (round(float(v)) for v in box_xyxy)
    # xyxy is edge-exclusive; cv2.rectangle's second corner is the last pixel drawn.
    cv2.rectangle(frame, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), color, thickness, cv2.LINE_AA)
    if label:
        scale = _font_scale(frame.shape[0])
        (tw, th), base = cv2.getTextSize(label, _FONT, scale, 1)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y2  # below the box near the top edge
        cv2.rectangle(frame, (x1, top), (x1 + tw + 4, top + th + base + 2), color, cv2.FILLED)
        cv2.putText(frame, label, (x1 + 2, top + th + 1), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return frame


def _wrap(text: str, width_px: int, scale: float) -> list[str]:
    """Greedy word wrap so that each line fits ``width_px`` at the given font scale."""
    char_w = max(1, cv2.getTextSize("n", _FONT, scale, 1)[0][0])
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        # Start from an estimate by character count, then shrink lines that still overflow.
        columns = max(1, width_px // char_w)
        wrapped = textwrap.wrap(paragraph, columns) or [""]
        while columns > 1 and any(cv2.getTextSize(ln, _FONT, scale, 1)[0][0] > width_px for ln in wrapped):
            columns -= 1
            wrapped = textwrap.wrap(paragraph, columns, break_long_words=True) or [""]
        lines.extend(wrapped)
    return lines


def draw_caption(
    frame: np.ndarray,
    text: str,
    *,
    position: str = "bottom",
    max_lines: int | None = None,
    color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Write ``text`` wrapped to the frame width on a darkened band at the top or bottom, in place.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        text: the caption; newlines start new lines.
        position: ``"bottom"`` or ``"top"``.
        max_lines: keep at most this many lines (the last one ends with an ellipsis when cut).
        color: RGB text colour.
    """
    if position not in ("top", "bottom"):
        raise ValueError(f"position {position!r} is invalid; expected 'top' or 'bottom'")
    height, width = frame.shape[:2]
    scale = _font_scale(height)
    margin = max(2, round(6 * scale))
    lines = _wrap(text, width - 2 * margin, scale)
    if max_lines is not None and len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1].rstrip() + "..."] if max_lines > 0 else []
    if not lines:
        return frame
    (_, line_h), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    step = line_h + base + margin // 2
    band_h = min(height, step * len(lines) + margin)
    top = 0 if position == "top" else height - band_h
    # Darken instead of painting black, so the scene behind stays visible.
    band = frame[top : top + band_h]
    band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for row, line in enumerate(lines):
        baseline = top + margin // 2 + line_h + row * step
        cv2.putText(frame, line, (margin, baseline), _FONT, scale, color, 1, cv2.LINE_AA)
    return frame


def draw_legend(
    frame: np.ndarray, names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None = None
) -> np.ndarray:
    """Write a key in the top-left corner, in place: a colour swatch and a name per entry, one per line.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        names: what each colour stands for (e.g. ``["tracker", "model"]``).
        colors: RGB colour of each entry; default the :data:`PALETTE` in order, as :func:`draw_track` uses it.
    """
    colors = list(colors) if colors is not None else [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    if len(colors) != len(names):
        raise ValueError(f"{len(colors)} colours for {len(names)} legend entries; expected one colour per entry")
    scale = _font_scale(frame.shape[0])
    (_, line_h), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    margin, step = max(2, round(4 * scale)), line_h + base + max(2, round(4 * scale))
    for row, (name, color) in enumerate(zip(names, colors, strict=True)):
        top = margin + row * step
        swatch = (margin, top, margin + line_h, top + line_h)
        cv2.rectangle(frame, swatch[:2], swatch[2:], color, cv2.FILLED)
        origin = (swatch[2] + margin, top + line_h)
        cv2.putText(frame, name, origin, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)  # outline, readable anywhere
        cv2.putText(frame, name, origin, _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def _iter_source(frames: VideoSource | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, VideoSource):
        for _, frame in frames.iter_frames():
            yield frame
    else:
        yield from frames


def draw_track(
    frames: VideoSource | Iterable[np.ndarray],
    track: Any,
    labels: str | Sequence[str | None] | None = None,
    *,
    captions: str | Sequence[str | None] | None = None,
    thickness: int = 2,
    legend: Sequence[str] | None = None,
) -> Iterator[np.ndarray]:
    """Yield copies of ``frames`` with each track's box drawn where it is visible.

    Args:
        frames: a :class:`~artemis.video.VideoSource` (e.g. :class:`artemis.video.VideoReader`) or an iterable
            of ``(H, W, 3)`` uint8 RGB frames.
        track: an :class:`artemis.track.Track` or a sequence of them (one colour each).
        labels: a tag per track drawn above its box (a single string for a single track).
        captions: a caption for every frame, or one per frame (``None`` to skip a frame).
        thickness: box line width in pixels.
        legend: a name per track, written with its colour in the top-left corner (:func:`draw_legend`).

    Yields:
        ``(H, W, 3)`` uint8 RGB frames; the key frame of the first track gets a thicker box.

    Raises:
        VideoError: if a reader's frame count differs from the track's.
    """
    tracks = list(track) if isinstance(track, (list, tuple)) else [track]
    if isinstance(labels, str) or labels is None:
        labels = [labels] * len(tracks)
    if len(labels) != len(tracks):
        raise ValueError(f"{len(labels)} labels for {len(tracks)} tracks; expected one label per track")
    reader_frames = getattr(frames, "num_frames", None)
    for t in tracks:
        if reader_frames is not None and int(reader_frames) != t.num_frames:
            raise VideoError(f"the video has {reader_frames} frames but the track has {t.num_frames}")
    for index, frame in enumerate(_iter_source(frames)):
        canvas = np.array(frame, dtype=np.uint8, copy=True)
        for number, (t, label) in enumerate(zip(tracks, labels, strict=True)):
            if index < t.num_frames and t.visible[index]:
                width = thickness + 1 if index == t.key_frame else thickness
                draw_box(canvas, t.boxes[index], color=PALETTE[number % len(PALETTE)], label=label, thickness=width)
        caption = captions if isinstance(captions, str) or captions is None else captions[index]
        if caption:
            draw_caption(canvas, caption)
        if legend:
            draw_legend(canvas, legend)
        yield canvas


@functools.cache
def h264_available() -> bool:
    """Whether PyAV is installed and can encode H.264 (libx264), so that an ``.mp4`` plays in browsers."""
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:  # a PyAV built without x264
        return False
    return True


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write RGB ``frames`` to ``path`` atomically: ``.mp4``, ``.mov`` (mp4v), ``.avi`` (MJPG) or ``.gif``.

    An ``.mp4`` is H.264 (yuv420p, index at the front) when :func:`h264_available`, so browsers play it;
    yuv420p needs even sizes, so an odd last row or column is dropped. Without libx264 it is OpenCV's
    mp4v, which players such as VLC and ffmpeg read but browsers do not. Frames are streamed to the encoder
    for video containers; a GIF is assembled in memory (keep GIFs short). GIFs use Pillow when installed
    and OpenCV's animation encoder otherwise.

    Returns:
        ``path``.

    Raises:
        VideoError: for an unsupported extension, no frames, frames of changing size or a failing encoder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FOURCC and suffix != ".gif":
        raise VideoError(f"cannot write {path}: unsupported extension {suffix!r}; expected .mp4, .mov, .avi or .gif")
    fps = float(fps) if fps and fps > 0 else 25.0
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            count = _write_gif(tmp, frames, fps)
        elif suffix == ".mp4" and h264_available():
            count = _write_h264(tmp, frames, fps)
        else:
            count = _write_container(tmp, suffix, frames, fps)
    logger.info("wrote %d frames to %s", count, path)
    return path


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None, index: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise VideoError(f"frame {index} has shape {frame.shape}; expected (H, W, 3) RGB")
    if size is not None and frame.shape[:2] != size:
        raise VideoError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but earlier frames are {size[1]}x{size[0]}"
        )
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _write_container(tmp: Path, suffix: str, frames: Iterable[np.ndarray], fps: float) -> int:
    # OpenCV picks the container from the file name, so encode to a sibling with the right extension
    # and move it onto the atomic temporary path.
    target = tmp.with_name(tmp.name + suffix)
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    count = 0
    try:
        for count, frame in enumerate(frames, start=1):
            frame = _check_frame(frame, size, count - 1)
            if writer is None:
                size = frame.shape[:2]
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*_FOURCC[suffix]), fps, (size[1], size[0]))
                if not writer.isOpened():
                    raise VideoError(
                        f"OpenCV could not open a {_FOURCC[suffix]} writer for {suffix} at {size[1]}x{size[0]}"
                    )
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if writer is None:
            raise VideoError("no frames to write; expected at least one frame")
        writer.release()
        writer = None
        os.replace(target, tmp)
    finally:
        if writer is not None:
            writer.release()
        target.unlink(missing_ok=True)
    return count


def _write_h264(tmp: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    import av

    rate = Fraction(fps).limit_denominator(1001)
    size: tuple[int, int] | None = None
    count = 0
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = None
        for count, frame in enumerate(frames, start=1):
            frame = _check_frame(frame, size, count - 1)
            if stream is None:
                size = frame.shape[:2]
                height, width = (size[0] // 2) * 2, (size[1] // 2) * 2  # yuv420p halves both sizes
                if height == 0 or width == 0:
                    raise VideoError(f"frame 0 is {size[1]}x{size[0]}; H.264 needs at least 2x2 pixels")
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"}
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            container.mux(stream.encode(picture))
        if stream is None:
            raise VideoError("no frames to write; expected at least one frame")
        container.mux(stream.encode(None))
    return count


def _write_gif(tmp: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    size: tuple[int, int] | None = None
    images: list[np.ndarray] = []
    for index, frame in enumerate(frames):
        frame = _check_frame(frame, size, index)
        size = frame.shape[:2]
        images.append(frame)
    if not images:
        raise VideoError("no frames to write; expected at least one frame")
    duration_ms = max(10, round(1000 / fps))  # GIF delays are in 1/100 s; browsers floor tiny ones
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        pil = [Image.fromarray(f) for f in images]
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0)
        return len(images)
    animation = cv2.Animation()
    animation.frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in images]
    animation.durations = [duration_ms] * len(images)
    animation.loop_count = 0
    ok, buffer = cv2.imencodeanimation(".gif", animation)
    if not ok:
        raise VideoError(f"OpenCV {cv2.__version__} cannot encode GIF animations; install Pillow")
    tmp.write_bytes(np.asarray(buffer, dtype=np.uint8).tobytes())
    return len(images)
