"""Elysium box-out: the LLM itself writes the target's box on every frame (SOT, RSOT).

A model with ``video_layout="frames"`` sees each frame as its own group of tokens, so it can say where
the target is on each one. The prompt is Elysium's layout, ``"Frame 1: <frame tokens>, Frame 2: ...\\n"``
followed by the SOT question (the target's box on frame 1) or the RSOT question (a referring
expression); the answer is ``"Frame 1: [x1,y1,x2,y2], Frame 2: [..], ..."``.

* **Coordinates** are those of the model's square input: a pixel box goes through
  :class:`artemis.boxes.SquareTransform` (pad to a square, as the frames are) and is written as Elysium
  text, each value ``round(v * 100)`` (:func:`artemis.boxes.format_elysium_box`). The model reads and
  writes positions on the image it sees; for a square video they equal Elysium's frame-relative values.
* **Clips.** A long video is cut into clips of ``clip_length`` frames (8) with stride ``clip_length - 1``
  (7); the box predicted on a clip's last frame is the frame-1 box of the next clip. When the video does
  not end on a clip boundary, the last clip is moved back so it ends on the last frame (every clip the
  model sees has ``clip_length`` real frames); its frame-1 box is the prediction already made for that
  frame. On merging, frames already predicted by an earlier clip keep that prediction (overlaps dropped).
* **Parse failures never raise.** A frame whose box is missing or garbled is *unparsed*; a box that is
  inverted, of zero size or outside the frame after clipping is *invalid* (``[0,0,0,0]``, what the
  training data writes for an absent target, is such a box). Both become NaN rows, which the tracking
  evaluators replace by the previous frame's box; :class:`BoxOutTrack` counts them.

The prompt of a clip is built by :meth:`artemis.model.ArtemisProcessor.box_output_item`, shared with the
training data. A model must have ``"boxes"`` among its config's ``tasks`` (:func:`require_task`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from artemis.boxes import BoxFormat, SquareTransform, box_area, clip_boxes, parse_elysium_frames, validate_box
from artemis.errors import ConfigError, VideoError
from artemis.model.configuration import ArtemisConfig
from artemis.model.generation import generate
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.track import Track
from artemis.video import VideoSource

logger = logging.getLogger(__name__)

__all__ = [
    "CLIP_LENGTH",
    "BoxOutTrack",
    "BoxStatus",
    "ClipBoxes",
    "clip_starts",
    "parse_clip_answer",
    "require_task",
    "track_with_llm",
]

CLIP_LENGTH = 8
"""Frames per clip (Elysium); the stride is one less, so consecutive clips share a frame."""


class BoxStatus(IntEnum):
    """What happened to the box of one frame of a box-output prediction."""

    GIVEN = 0  # the user's box
    PREDICTED = 1  # read from the answer
    UNPARSED = 2  # missing from the answer or garbled
    INVALID = 3  # read, but inverted, empty or outside the frame


def require_task(config: ArtemisConfig, task: str, model_name: str = "this model") -> None:
    """Refuse a task the model was not trained for, naming the model and the fix."""
    if task in config.tasks:
        return
    if task == "boxes":
        raise ConfigError(
            f"{model_name} was not trained to write boxes (its tasks are {config.tasks}); use a model trained "
            "with tasks: [describe, boxes] (see docs/evaluation.md), or track with a tracker (artemis track)"
        )
    raise ConfigError(f"{model_name} was not trained for {task!r} (its tasks are {config.tasks})")


# --- schedule ------------------------------------------------------------------------------------


def clip_starts(num_frames: int, clip_length: int = CLIP_LENGTH, stride: int | None = None) -> list[int]:
    """Start positions of the clips covering ``num_frames`` frames.

    Clips are ``clip_length`` long, ``stride`` apart (default ``clip_length - 1``); a sequence that does
    not end on a clip boundary gets a last clip moved back to end on its last frame. A sequence shorter
    than a clip is one short clip. E.g. 20 frames, clips of 8: ``[0, 7, 12]`` (frames 0-7, 7-14, 12-19).
    """
    stride = clip_length - 1 if stride is None else stride
    if clip_length < 2 or not 1 <= stride < clip_length:
        raise ConfigError(
            f"clip_length={clip_length}, stride={stride}: clips need at least 2 frames and must overlap "
            f"(1 <= stride < clip_length) so each clip starts from a box already predicted; e.g. 8 and 7"
        )
    if num_frames < 1:
        raise VideoError(f"cannot schedule clips over {num_frames} frames; expected at least 1")
    if num_frames <= clip_length:
        return [0]
    starts = list(range(0, num_frames - clip_length + 1, stride))
    if starts[-1] + clip_length < num_frames:
        starts.append(num_frames - clip_length)
    return starts


# --- parsing --------------------------------------------------------------------------------------


@dataclass
class ClipBoxes:
    """The boxes read out of one clip's answer.

    Attributes:
        boxes: (n, 4) pixel ``xyxy`` on the source frame, NaN where ``status`` is not PREDICTED.
        status: (n,) a :class:`BoxStatus` per frame: ``PREDICTED``, ``UNPARSED`` or ``INVALID``.
    """

    boxes: np.ndarray
    status: np.ndarray


def parse_clip_answer(text: str, num_frames: int, transform: SquareTransform) -> ClipBoxes:
    """Read one clip's ``"Frame 1: [..], ..."`` answer into pixel boxes; never raises on bad text.

    Values are clipped to 0..100 (the square input), mapped back through ``transform`` and clipped to
    the frame; frames labelled beyond the clip and repeated labels (after the first) are ignored.
    """
    boxes = np.full((num_frames, 4), np.nan)
    status = np.full(num_frames, BoxStatus.UNPARSED, dtype=np.int8)
    for index, parsed in enumerate(parse_elysium_frames(text, num_frames)):
        if parsed is None:
            continue
        pixel = clip_boxes(transform.boxes_from_model(np.clip(parsed, 0.0, 1.0)), transform.width, transform.height)
        if not np.isfinite(pixel).all() or box_area(pixel) <= 0:
            status[index] = BoxStatus.INVALID
            continue
        boxes[index] = pixel
        status[index] = BoxStatus.PREDICTED
    return ClipBoxes(boxes, status)


# --- tracking -------------------------------------------------------------------------------------


@dataclass
class BoxOutTrack(Track):
    """A :class:`Track` written by the LLM, with what went wrong on the way.

    Attributes:
        status: (T,) a :class:`BoxStatus` per frame (``GIVEN`` is the user's box).
        texts: the generated answer of every clip, in the order they ran.
        clips: the frame indices of every clip (backward clips list frames in the order shown).
    """

    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    texts: list[str] = field(default_factory=list)
    clips: list[list[int]] = field(default_factory=list)

    @property
    def num_unparsed(self) -> int:
        """Frames whose box was missing from the answer or could not be read."""
        return int(np.sum(self.status == BoxStatus.UNPARSED))

    @property
    def num_invalid(self) -> int:
        """Frames whose box was read but is empty, inverted or outside the frame."""
        return int(np.sum(self.status == BoxStatus.INVALID))

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["status"] = [BoxStatus(int(s)).name.lower() for s in self.status]
        data["texts"] = list(self.texts)
        data["clips"] = [list(map(int, c)) for c in self.clips]
        return data


@dataclass
class _Pass:
    boxes: np.ndarray  # (n, 4) pixel xyxy over the pass's frames
    status: np.ndarray  # (n,)
    texts: list[str]
    clips: list[list[int]]


def _last_box(boxes: np.ndarray, upto: int) -> np.ndarray | None:
    """The latest finite box at a position <= ``upto``."""
    for position in range(upto, -1, -1):
        if np.isfinite(boxes[position]).all():
            return boxes[position]
    return None


def _run_pass(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    order: list[int],
    first_box: np.ndarray | None,
    expression: str | None,
    clip_length: int,
    stride: int,
    generation: dict[str, Any],
) -> _Pass:
    """Box output over the frames ``order`` (forward or backward from the start frame)."""
    transform = processor.video_processor.transform_for(source.width, source.height)
    count = len(order)
    boxes = np.full((count, 4), np.nan)
    status = np.full(count, BoxStatus.UNPARSED, dtype=np.int8)
    texts: list[str] = []
    clips: list[list[int]] = []
    filled = 0  # positions [0, filled) hold a prediction already
    if first_box is not None:
        boxes[0], status[0] = first_box, BoxStatus.GIVEN
    for start in clip_starts(count, clip_length, stride):
        positions = list(range(start, min(start + clip_length, count)))
        frame_ids = [order[p] for p in positions]
        anchor = _last_box(boxes, start)  # the box predicted for this clip's frame 1 (or the user's)
        frames = source.get_frames(frame_ids)  # (n, H, W, 3)
        if anchor is not None:
            inputs = processor(frames, task="sot", box=anchor)
        elif expression is not None:
            inputs = processor(frames, task="rsot", expression=expression)
        else:  # SOT always has its box on position 0
            raise VideoError("no box to start the clip from")
        text = generate(model, processor, inputs, **generation)[0]
        texts.append(text)
        clips.append(frame_ids)
        parsed = parse_clip_answer(text, len(positions), transform)
        for offset, position in enumerate(positions):
            if position < filled:
                continue  # overlap: the earlier clip's prediction stands
            boxes[position] = parsed.boxes[offset]
            status[position] = parsed.status[offset]
        filled = positions[-1] + 1
        if first_box is not None:
            boxes[0], status[0] = first_box, BoxStatus.GIVEN
    return _Pass(boxes, status, texts, clips)


def track_with_llm(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    *,
    box: Sequence[float] | np.ndarray | None = None,
    frame_index: int = 0,
    expression: str | None = None,
    box_format: BoxFormat = "xyxy",
    clip_length: int | None = None,
    stride: int | None = None,
    model_name: str = "this model",
    **generation: Any,
) -> BoxOutTrack:
    """Track a target by having the LLM write its box on every frame (Elysium SOT / RSOT).

    Args:
        model / processor: a model whose config's ``tasks`` include ``"boxes"``, and its processor.
        source: an open video source.
        box: SOT: the target on ``frame_index`` (pixels, ``xyxy`` or ``xywh``).
        frame_index: SOT: the frame of ``box``; clips run forward to the end and backward to frame 0.
            RSOT: the frame to start from (default the first).
        expression: RSOT: a referring expression ("the red circle"); used for the first clip and for any
            clip that starts before the target was found, later clips start from the last box.
        clip_length / stride: clip schedule (default ``min(8, num_frames)`` and one less).
        model_name: how errors name the model.
        generation: ``generate`` keyword arguments; ``max_new_tokens`` defaults to 24 per frame.

    Returns:
        A :class:`BoxOutTrack`: pixel boxes on every frame (NaN where unparsed or invalid), per-frame
        status and the generated texts.

    Raises:
        ConfigError: a model not trained for boxes, neither or both of ``box`` and ``expression``, a bad
            schedule.
        BoxError / VideoError: a bad box or frame index.
    """
    config = model.config
    require_task(config, "boxes", model_name)
    if (box is None) == (expression is None):
        raise ConfigError("give either box= (SOT: the target on frame_index) or expression= (RSOT), not both")
    total = source.num_frames
    if not 0 <= frame_index < total:
        raise VideoError(f"frame index {frame_index} is outside the video (0..{total - 1})")
    clip_length = clip_length or min(CLIP_LENGTH, config.num_frames)
    if clip_length > config.num_frames:
        raise ConfigError(f"clip_length={clip_length} exceeds the model's num_frames={config.num_frames}")
    stride = clip_length - 1 if stride is None else stride
    clip_starts(1, clip_length, stride)  # validates the schedule before any generation
    settings = {"max_new_tokens": 24 * clip_length + 8, **generation}
    first = None
    if box is not None:
        first = validate_box(box, source.width, source.height, box_format=box_format, frame_index=frame_index)

    boxes = np.full((total, 4), np.nan)
    status = np.full(total, BoxStatus.UNPARSED, dtype=np.int8)
    # Forward from the start frame to the end, then (from a middle frame) backward to frame 0, starting
    # from the start frame's box: the user's (SOT) or the one the forward pass found (RSOT).
    run = (model, processor, source)
    forward = _run_pass(*run, list(range(frame_index, total)), first, expression, clip_length, stride, settings)
    boxes[frame_index:], status[frame_index:] = forward.boxes, forward.status
    texts, clips = list(forward.texts), list(forward.clips)
    if frame_index > 0:
        order = list(range(frame_index, -1, -1))
        start_box = first if first is not None else _last_box(forward.boxes, 0)
        backward = _run_pass(*run, order, start_box, expression, clip_length, stride, settings)
        boxes[order[1:]], status[order[1:]] = backward.boxes[1:], backward.status[1:]
        texts += backward.texts
        clips += backward.clips
    unparsed = int(np.sum(status == BoxStatus.UNPARSED))
    if unparsed:
        logger.warning("box output: %d of %d frames had no readable box (kept as NaN)", unparsed, total)
    return BoxOutTrack(
        boxes=boxes,
        visible=np.isfinite(boxes).all(axis=1),
        key_frame=frame_index,
        num_frames=total,
        fps=float(source.fps or 0.0),
        width=int(source.width),
        height=int(source.height),
        status=status,
        texts=texts,
        clips=clips,
    )
