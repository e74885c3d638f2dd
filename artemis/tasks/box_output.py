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
  From a key frame in the middle, clips run forward to the end and backward (frames in reverse) to 0.
* **Seeding.** SOT: every clip is asked the SOT question with the latest box (the user's, predicted or
  carried). RSOT (:func:`ground`): the first clip is asked the expression; a clip after one that yielded
  a valid box is asked the SOT question with the latest valid box; a clip after one that yielded none is
  asked the expression again.
* **Parse failures never raise.** A frame whose box is missing or garbled is *unparsed*: it carries the
  latest valid box before it (NaN when there is none yet). A box that is inverted, of zero size or outside
  the frame after clipping is *invalid* (``[0,0,0,0]``, what the training data writes for an absent
  target, is such a box): a NaN row, not visible. :class:`BoxOutTrack` counts both.
* **Memory.** A clip's frames are read when the clip runs, the frames it shares with the clip before are
  kept and the rest dropped, so no more than about one clip of frames is held whatever the video's length;
  forward clips are decoded in one increasing run, backward clips one short seek each.

The prompt of a clip is built by :meth:`artemis.model.ArtemisProcessor.box_output_item`, shared with the
training data. A model must have ``"boxes"`` among its config's ``tasks`` (:func:`require_task`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from artemis.boxes import (
    BoxFormat,
    SquareTransform,
    box_area,
    box_iou,
    clip_boxes,
    parse_elysium_frames,
    validate_box,
)
from artemis.errors import ConfigError, VideoError, is_int
from artemis.model.configuration import ArtemisConfig
from artemis.model.generation import generate
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.number_loss import BOX_VALUES, number_token_ids
from artemis.model.processing import ArtemisProcessor
from artemis.prompts import normalize_expression
from artemis.track import Track
from artemis.video import VideoSource

logger = logging.getLogger(__name__)

__all__ = [
    "CLIP_LENGTH",
    "BoxOutTrack",
    "BoxStatus",
    "ClipBoxes",
    "NumberWindow",
    "View",
    "check_number_window",
    "check_views",
    "clip_starts",
    "combine_views",
    "ground",
    "mirror_words",
    "parse_clip_answer",
    "plan_views",
    "require_task",
    "track_with_llm",
    "unknown_words",
]

CLIP_LENGTH = 8
"""Frames per clip (Elysium); the stride is one less, so consecutive clips share a frame."""

VIEWS_AGREE_IOU = 0.5
"""Two views' boxes of one frame agree at this IoU or more (:func:`combine_views`): the overlap at which
tracking benchmarks count a box as found (SR50)."""


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


# --- views ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One way of showing a clip to the model: its frames on a canvas ``pad`` pixels wider and taller, at
    ``(x, y)`` on it, the new border filled by repeating the frame's edge, and with ``mirror`` that canvas
    flipped left to right. ``View()`` is the frames as they are.

    A larger canvas moves the frames against the vision tower's patch grid and scales them a little when
    the processor resizes them, and a mirror shows every object on the other side, so the same clip seen in
    another view gives answers whose errors differ (see :func:`combine_views`). No part of the frame is cut
    off, so a target at the edge stays in view. A mirrored view is asked the expression with "left" and
    "right" swapped (:func:`mirror_words`).
    """

    x: int = 0
    y: int = 0
    pad: int = 0
    mirror: bool = False

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` (n, H, W, 3) as this view shows them: (n, H + pad, W + pad, 3)."""
        if self.pad:
            frames = np.pad(
                frames, ((0, 0), (self.y, self.pad - self.y), (self.x, self.pad - self.x), (0, 0)), mode="edge"
            )
        return np.ascontiguousarray(frames[:, :, ::-1]) if self.mirror else frames

    def box(self, box: np.ndarray, width: int) -> np.ndarray:
        """A pixel ``xyxy`` box of a frame ``width`` pixels wide, as this view shows it."""
        moved = np.asarray(box, dtype=float) + np.array([self.x, self.y, self.x, self.y])
        return _mirrored(moved, width + self.pad) if self.mirror else moved

    def expression(self, expression: str) -> str:
        """The expression this view is asked: left and right swapped in a mirror."""
        return mirror_words(expression) if self.mirror else expression

    def read(self, text: str, num_frames: int, transform: SquareTransform) -> ClipBoxes:
        """This view's answer read into pixel boxes of the frame (``transform`` is the frame's own)."""
        if self == View():
            return parse_clip_answer(text, num_frames, transform)
        width, height = transform.width + self.pad, transform.height + self.pad
        parsed = parse_clip_answer(text, num_frames, SquareTransform(width=width, height=height, size=transform.size))
        boxes = _mirrored(parsed.boxes, width) if self.mirror else parsed.boxes
        boxes = clip_boxes(boxes - np.array([self.x, self.y, self.x, self.y]), transform.width, transform.height)
        status = parsed.status.copy()
        gone = (status == BoxStatus.PREDICTED) & (box_area(boxes) <= 0)  # on the added border only
        status[gone] = BoxStatus.INVALID
        boxes[status != BoxStatus.PREDICTED] = np.nan
        return ClipBoxes(boxes, status)


def _mirrored(boxes: np.ndarray, width: int) -> np.ndarray:
    """Pixel ``xyxy`` boxes on a canvas ``width`` pixels wide, flipped left to right."""
    return np.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], axis=-1)


_SIDES = {"left": "right", "right": "left"}


def mirror_words(expression: str) -> str:
    """``expression`` as a mirror image would need it said: "left" and "right" swapped, also inside
    "leftmost", "rightward(s)" and the like (the case of the first letter kept)."""

    def swap(match: re.Match) -> str:
        word = match.group(1)
        other = _SIDES[word.lower()]
        return (other.capitalize() if word[0].isupper() else other) + match.group(2)

    return re.sub(r"\b(left|right)(most|wards?|)\b", swap, expression, flags=re.IGNORECASE)


def check_views(count: Any) -> int:
    """``count`` if it is a valid number of views (a whole number >= 1), else one clear error."""
    if not is_int(count) or count < 1:
        raise ConfigError(f"views={count!r} is not a whole number >= 1; use 1 to ask each clip once, or e.g. 3")
    return int(count)


def plan_views(count: int, step: int) -> list[View]:
    """``count`` views of a clip: the frames as they are, their mirror image, then canvases ``step`` pixels
    larger with the frames at each of their four corners in turn (bottom-right, top-left, bottom-left,
    top-right), each followed by its mirror image, then ``2 * step`` larger the same way, and so on."""
    check_views(count)
    views = [View(), View(mirror=True)]
    ring = 1
    while len(views) < count:
        pad = ring * max(1, int(step))
        for x, y in ((pad, pad), (0, 0), (pad, 0), (0, pad)):
            views += [View(x, y, pad), View(x, y, pad, mirror=True)]
        ring += 1
    return views[:count]


def combine_views(views: Sequence[ClipBoxes], agree: float = VIEWS_AGREE_IOU) -> ClipBoxes:
    """One clip's boxes from the boxes its views read, frame by frame: a vote, then a mean.

    A frame is PREDICTED when at least as many views read a box on it as read an empty one (INVALID); its box
    is the mean of the boxes that agree (IoU >= ``agree``) with the box most of the others agree with (the
    earliest view's on a tie). Else INVALID when any view read an empty box; else UNPARSED. The vote keeps
    the object most views found when one view strays to another; the mean of the agreeing boxes is a finer
    estimate than any one of them. (A coordinate-wise median, tried first, mixes objects when views split
    between them, and scored lower: docs/experiments.md, "Each clip in several views".)
    """
    if len(views) == 1:
        return views[0]
    boxes = np.stack([view.boxes for view in views])  # (V, n, 4)
    status = np.stack([view.status for view in views])  # (V, n)
    predicted = (status == BoxStatus.PREDICTED).sum(axis=0)  # (n,)
    empty = (status == BoxStatus.INVALID).sum(axis=0)  # (n,)
    merged = np.full(boxes.shape[1:], np.nan)
    merged_status = np.full(boxes.shape[1], BoxStatus.UNPARSED, dtype=np.int8)
    for frame in range(boxes.shape[1]):
        if predicted[frame] and predicted[frame] >= empty[frame]:
            read = boxes[status[:, frame] == BoxStatus.PREDICTED, frame]  # (k, 4), in view order
            agreeing = box_iou(read[:, None], read[None]) >= agree  # (k, k)
            best = int(np.argmax(agreeing.sum(axis=1)))  # argmax takes the first of equals
            merged[frame] = read[agreeing[best]].mean(axis=0)
            merged_status[frame] = BoxStatus.PREDICTED
        elif empty[frame]:
            merged_status[frame] = BoxStatus.INVALID
    return ClipBoxes(merged, merged_status)


# --- tracking -------------------------------------------------------------------------------------


@dataclass
class BoxOutTrack(Track):
    """A :class:`Track` written by the LLM, with what went wrong on the way.

    ``boxes``/``visible`` are the merged answers: a predicted box, the carried box on an unparsed frame
    (NaN before any box was found), NaN on an invalid one.

    Attributes:
        status: (T,) a :class:`BoxStatus` per frame (``GIVEN`` is the user's box).
        texts: the generated answer of every clip, in the order they ran.
        clips: the frame indices of every clip (backward clips list frames in the order shown).
        asked: per clip, the question it was asked: ``"sot"`` (from a box) or ``"rsot"`` (the expression).
        expression: RSOT: the referring expression (``None`` for SOT).
        unknown_words: words of the expression the model's tokenizer does not know (read as ``<unk>``).
    """

    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    texts: list[str] = field(default_factory=list)
    clips: list[list[int]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    expression: str | None = None
    unknown_words: list[str] = field(default_factory=list)

    @property
    def num_unparsed(self) -> int:
        """Frames whose box was missing from the answer or could not be read."""
        return int(np.sum(self.status == BoxStatus.UNPARSED))

    @property
    def num_invalid(self) -> int:
        """Frames whose box was read but is empty, inverted or outside the frame."""
        return int(np.sum(self.status == BoxStatus.INVALID))

    @property
    def num_predicted(self) -> int:
        """Frames whose box was read from an answer."""
        return int(np.sum(self.status == BoxStatus.PREDICTED))

    def to_json(self) -> dict[str, Any]:
        """:meth:`Track.to_json` and the box-output fields: ``status`` per frame, ``num_unparsed``,
        ``num_invalid``, the ``texts``, ``clips`` and ``asked`` of every clip, the ``expression`` and its
        ``unknown_words``."""
        data = super().to_json()
        data["status"] = [BoxStatus(int(s)).name.lower() for s in self.status]
        data["num_unparsed"] = self.num_unparsed
        data["num_invalid"] = self.num_invalid
        data["texts"] = list(self.texts)
        data["clips"] = [list(map(int, c)) for c in self.clips]
        data["asked"] = list(self.asked)
        data["expression"] = self.expression
        data["unknown_words"] = list(self.unknown_words)
        return data


class NumberWindow(LogitsProcessor):
    """Greedy box numbers read as a local mean: where the best next token is a number 0..100, write the
    probability-weighted mean of the values within ``window`` of it instead (rounded to a whole number).

    A box value written greedily is the mode of the model's distribution over the 101 numbers; when that
    distribution is wide or lopsided (36 likely, 37 and 38 almost as likely, 35 not), the mean of the mode's
    neighbourhood is a better estimate of a coordinate than the mode. Only the neighbourhood counts, so a
    second bump far away (another object) does not pull the value towards it. Tokens other than numbers are
    left to greedy decoding. Transformers' processors change scores, they do not estimate values, so this
    one is written here: it puts the whole mass on the chosen number.

    Needs every number 0..100 to be one token (:func:`artemis.model.number_loss.number_token_ids`).
    """

    def __init__(self, number_ids: Sequence[int], window: int) -> None:
        if len(number_ids) != BOX_VALUES:
            raise ValueError(f"expected {BOX_VALUES} number ids, got {len(number_ids)}")
        self.number_ids = torch.as_tensor(list(number_ids), dtype=torch.long)
        self.window = int(window)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids = self.number_ids.to(scores.device)
        numbers = scores[:, ids].float()  # (B, 101)
        best_value = numbers.argmax(dim=-1)  # (B,)
        chosen = ids[best_value] == scores.argmax(dim=-1)  # (B,) rows whose greedy token is a number
        if not bool(chosen.any()):
            return scores
        values = torch.arange(BOX_VALUES, device=scores.device)  # (101,)
        near = (values[None] - best_value[:, None]).abs() <= self.window  # (B, 101)
        weights = numbers.masked_fill(~near, float("-inf")).softmax(dim=-1)  # (B, 101)
        mean = (weights * values.float()).sum(dim=-1).round().long()  # (B,)
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0], device=scores.device), ids[mean]] = 0.0
        return torch.where(chosen[:, None], forced, scores)


def number_window_processor(processor: ArtemisProcessor, window: int) -> NumberWindow:
    """The logits processor of box-output generation for ``number_window=window`` (>= 1).

    Raises:
        ConfigError: the tokenizer does not write each number 0..100 as one token.
    """
    ids = number_token_ids(processor.tokenizer)
    if ids is None:
        raise ConfigError(
            f"number_window={window} needs a tokenizer that writes each box value 0..100 as one token, and this "
            "model's does not; use number_window=0 (greedy numbers)"
        )
    return NumberWindow(ids, window)


def check_number_window(window: Any) -> int:
    """``window`` as an int, or a ConfigError naming the value and the fix."""
    if not is_int(window, minimum=0):
        raise ConfigError(
            f"number_window={window!r} is not a whole number >= 0; use 0 for greedy box numbers, or e.g. 2 to "
            "write the mean of the values within 2 of the most likely one"
        )
    return int(window)


class _ClipFrames:
    """Reads the frames of consecutive clips, keeping only the frames the next clip shares with the last.

    Forward clips ask for increasing frames, so a decoder runs on without seeking; a backward clip is
    decoded as one increasing run (``get_frames``) and shown in reverse, as the tracker's chunked backward
    pass does. At most one clip of frames is held between calls.
    """

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.held: dict[int, np.ndarray] = {}

    def read(self, frame_ids: list[int]) -> np.ndarray:
        """The frames ``frame_ids`` in that order: ``(n, H, W, 3)``."""
        self.held = {index: self.held[index] for index in frame_ids if index in self.held}
        missing = sorted(set(frame_ids) - self.held.keys())
        if missing:
            self.held.update(zip(missing, self.source.get_frames(missing), strict=True))
        return np.stack([self.held[index] for index in frame_ids])  # (n, H, W, 3)


@dataclass
class _Pass:
    boxes: np.ndarray  # (n, 4) pixel xyxy over the pass's frames
    status: np.ndarray  # (n,)
    texts: list[str] = field(default_factory=list)
    clips: list[list[int]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)


@dataclass
class _Runner:
    """What every clip of one request shares: the model, its processor, the frames and the settings."""

    model: ArtemisForConditionalGeneration
    processor: ArtemisProcessor
    frames: _ClipFrames
    transform: SquareTransform
    clip_length: int
    stride: int
    generation: dict[str, Any]
    bar: Any
    template: bool = False  # keep the selector's query of the first clip started from a box (see track_with_llm)
    query: torch.Tensor | None = None  # (1, C) that query, once a clip has been started from a box
    restart: bool = False  # RSOT: track from the first box the expression's clip found (see track_with_llm)
    views: list[View] = field(default_factory=lambda: [View()])  # how each clip is shown (see track_with_llm)

    def clip(self, frame_ids: list[int], box: np.ndarray | None, expression: str | None) -> tuple[str, ClipBoxes]:
        """Ask one clip (SOT with ``box``, else RSOT with ``expression``); its answer and the boxes read.

        With several ``views`` the clip is asked once per view, in one batch: view 0 is the frames as they
        are, the others their mirror or the frames on a canvas a few pixels larger (:class:`View`). The boxes
        read are mapped back to the frame and combined (:func:`combine_views`); the text returned is view 0's.
        """
        frames = self.frames.read(frame_ids)  # (n, H, W, 3)
        clips = [view.frames(frames) for view in self.views]
        if box is not None:
            boxes = [view.box(box, self.transform.width) for view in self.views]
            inputs = self.processor(clips, task="sot", box=boxes)
            first = self.template and self.query is None
            if first:  # view 0's own query becomes the template
                mask = inputs.get("frame_mask")
                self.query = self.model.frame_query(
                    inputs["pixel_values"][:1], inputs["query_boxes"][:1], None if mask is None else mask[:1]
                )
            # The template's own clip computes that query itself; its other views look for view 0's target.
            if self.template and (not first or len(clips) > 1):
                inputs["select_query"] = self.query.expand(len(clips), -1)
        else:
            inputs = self.processor(clips, task="rsot", expression=[view.expression(expression) for view in self.views])
        texts = generate(self.model, self.processor, inputs, **self.generation)
        self.bar.update(1)
        read = [view.read(text, len(frame_ids), self.transform) for view, text in zip(self.views, texts, strict=True)]
        return texts[0], combine_views(read)

    def run(self, order: list[int], first_box: np.ndarray | None, expression: str | None) -> _Pass:
        """Box output over the frames ``order`` (forward or backward from the start frame).

        ``first_box`` is the box on ``order[0]`` (given, not predicted); without it the first clip is asked
        ``expression``. With ``restart``, the first frame an expression's clip puts a box on ends that clip:
        the clips are planned again from that frame, which starts from its box as SOT starts from the user's.
        """
        count = len(order)
        result = _Pass(np.full((count, 4), np.nan), np.full(count, BoxStatus.UNPARSED, dtype=np.int8))
        boxes, status = result.boxes, result.status
        filled = 0  # positions [0, filled) hold their final box
        if first_box is not None:
            boxes[0], status[0], filled = first_box, BoxStatus.GIVEN, 1
            if count == 1:
                return result  # the given frame is the whole pass: nothing to ask
        found = first_box is not None  # the clip before yielded a valid box (or the user gave one)
        starts = clip_starts(count, self.clip_length, self.stride)
        while starts:
            start = starts.pop(0)
            positions = list(range(start, min(start + self.clip_length, count)))
            # SOT always has a box to start from; RSOT re-asks the expression after a clip that found nothing.
            anchor = _last_box(boxes, start) if found or expression is None else None
            text, parsed = self.clip([order[p] for p in positions], anchor, expression if anchor is None else None)
            result.texts.append(text)
            result.clips.append([order[p] for p in positions])
            result.asked.append("rsot" if anchor is None else "sot")
            found = False
            filled_before, filled = filled, positions[-1] + 1
            for offset, position in enumerate(positions):
                if position < filled_before:
                    continue  # overlap: the earlier clip's prediction stands
                status[position] = parsed.status[offset]
                if status[position] == BoxStatus.PREDICTED:
                    boxes[position], found = parsed.boxes[offset], True
                    if anchor is None and self.restart:  # the expression found the target on this frame
                        filled = position + 1
                        rest = clip_starts(count - position, self.clip_length, self.stride) if filled < count else []
                        starts = [position + s for s in rest]
                        break
                elif status[position] == BoxStatus.UNPARSED:
                    carried = _last_box(boxes, position - 1)  # the latest valid box before it, if any
                    boxes[position] = np.nan if carried is None else carried
        return result


def _last_box(boxes: np.ndarray, upto: int) -> np.ndarray | None:
    """The latest finite box at a position <= ``upto``."""
    for position in range(upto, -1, -1):
        if np.isfinite(boxes[position]).all():
            return boxes[position]
    return None


def unknown_words(processor: ArtemisProcessor, expression: str) -> list[str]:
    """The words of ``expression`` its tokenizer reads as the unknown token (none for a byte-level one)."""
    tokenizer = processor.tokenizer
    text = normalize_expression(expression)
    if tokenizer.unk_token_id is None or not getattr(tokenizer, "is_fast", False):
        return []
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    return [text[begin:end] for token, (begin, end) in spans if token == tokenizer.unk_token_id]


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
    template: bool = True,
    number_window: int = 0,
    track_found: bool = False,
    views: int = 1,
    model_name: str = "this model",
    progress: bool = False,
    **generation: Any,
) -> BoxOutTrack:
    """Track a target by having the LLM write its box on every frame (Elysium SOT / RSOT).

    Args:
        model / processor: a model whose config's ``tasks`` include ``"boxes"``, and its processor.
        source: an open video source; frames are read clip by clip, never all at once.
        box: SOT: the target on ``frame_index`` (pixels, ``xyxy`` or ``xywh``).
        frame_index: SOT: the frame of ``box``; clips run forward to the end and backward to frame 0.
            RSOT: the frame to start from (default the first).
        expression: RSOT: a referring expression ("the red circle"); see :func:`ground`.
        clip_length / stride: clip schedule (default ``min(8, num_frames)`` and one less).
        template: with a frame selector that scores each frame's cells against the target's box on the
            clip's first frame (``frame_select_query``), keep the query of the first clip started from a box
            (the user's box in SOT, the first box found in RSOT) for every later clip of the request, as a
            tracker keeps its first template; False: each clip's own first box (written by the clip before)
            gives its query. Ignored by other models.
        number_window: 0 writes each box value greedily; k >= 1 writes the mean of the values within k of
            the most likely one, weighted by their probabilities (:class:`NumberWindow`; needs a tokenizer
            with one token per number 0..100).
        track_found: RSOT: the first frame the expression's clip puts a box on ends that clip, and the
            target is tracked from that frame and box as SOT tracks from the user's (the clips planned again
            from there); False keeps the rest of that clip's answer, as Elysium does.
        views: ask each clip this many times in one batch: the frames as they are, their mirror, then canvases
            larger by multiples of half a vision patch (:func:`plan_views`); keep per frame the box most views
            agree on, averaged over those that agree (:func:`combine_views`). 1 asks each clip once. One batch
            shares each generation step, so five views cost about twice one, not five times.
        model_name: how errors name the model.
        progress: show a progress bar over the clips (on stderr).
        generation: ``generate`` keyword arguments; ``max_new_tokens`` defaults to 24 per frame.

    Returns:
        A :class:`BoxOutTrack`: pixel boxes on every frame (carried where unparsed, NaN where invalid or
        before any box was found), per-frame status and the generated texts.

    Raises:
        ConfigError: a model not trained for boxes, neither or both of ``box`` and ``expression``, an empty
            expression, a bad schedule, a bad ``number_window``.
        BoxError / VideoError: a bad box or frame index.
    """
    config = model.config
    require_task(config, "boxes", model_name)
    if (box is None) == (expression is None):
        raise ConfigError("give either box= (SOT: the target on frame_index) or expression= (RSOT), not both")
    total = source.num_frames
    if not is_int(frame_index):
        raise VideoError(f"frame index {frame_index!r} is not an integer; expected 0..{total - 1}")
    if not 0 <= frame_index < total:
        raise VideoError(f"frame index {frame_index} is outside the video (0..{total - 1})")
    frame_index = int(frame_index)
    clip_length = clip_length or min(CLIP_LENGTH, config.num_frames)
    if clip_length > config.num_frames:
        raise ConfigError(f"clip_length={clip_length} exceeds the model's num_frames={config.num_frames}")
    stride = clip_length - 1 if stride is None else stride
    clip_starts(1, clip_length, stride)  # validates the schedule before any generation
    window = check_number_window(number_window)
    transform = processor.video_processor.transform_for(source.width, source.height)
    half_patch = 0.5 * config.vision_config.patch_size / transform.scale  # source pixels
    plan = plan_views(views, max(1, round(half_patch)))
    if window:
        processors = LogitsProcessorList(
            [*generation.get("logits_processor", []), number_window_processor(processor, window)]
        )
        generation = {**generation, "logits_processor": processors}
    first = None
    unknown: list[str] = []
    if box is not None:
        first = validate_box(box, source.width, source.height, box_format=box_format, frame_index=frame_index)
    else:
        unknown = unknown_words(processor, expression)
        if unknown:
            logger.warning("the model does not know the words %s of %r; it answers anyway", unknown, expression)

    forward_order = list(range(frame_index, total))
    backward_order = list(range(frame_index, -1, -1))
    skip_forward = first is not None and len(forward_order) == 1
    num_clips = (0 if skip_forward else len(clip_starts(len(forward_order), clip_length, stride))) + (
        len(clip_starts(len(backward_order), clip_length, stride)) if frame_index > 0 else 0
    )
    bar = tqdm(total=num_clips, desc="box output", unit="clip", disable=not progress)
    runner = _Runner(
        model,
        processor,
        _ClipFrames(source),
        transform,
        clip_length,
        stride,
        {"max_new_tokens": 24 * min(clip_length, total) + 8, **generation},  # ~24 tokens a frame
        bar,
        template=bool(template) and config.frame_select_query,  # the config refuses the query without the selector
        restart=bool(track_found),
        views=plan,
    )
    boxes = np.full((total, 4), np.nan)
    status = np.full(total, BoxStatus.UNPARSED, dtype=np.int8)
    try:
        # Forward from the start frame to the end, then (from a middle frame) backward to frame 0, starting
        # from the start frame's box: the user's (SOT) or the one the forward pass found (RSOT).
        forward = runner.run(forward_order, first, expression)
        boxes[frame_index:], status[frame_index:] = forward.boxes, forward.status
        passes = [forward]
        if frame_index > 0:
            start_box = first if first is not None else _last_box(forward.boxes, 0)
            backward = runner.run(backward_order, start_box, expression)
            boxes[backward_order[1:]], status[backward_order[1:]] = backward.boxes[1:], backward.status[1:]
            passes.append(backward)
    finally:
        bar.close()
    track = BoxOutTrack(
        boxes=boxes,
        visible=np.isfinite(boxes).all(axis=1),
        key_frame=frame_index,
        num_frames=total,
        fps=float(source.fps or 0.0),
        width=int(source.width),
        height=int(source.height),
        status=status,
        texts=[text for one in passes for text in one.texts],
        clips=[clip for one in passes for clip in one.clips],
        asked=[asked for one in passes for asked in one.asked],
        expression=expression,
        unknown_words=unknown,
    )
    if track.num_unparsed:
        logger.warning(
            "box output: %d of %d frames had no readable box (each carries the latest box before it, if any)",
            track.num_unparsed,
            total,
        )
    return track


def ground(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    expression: str,
    **options: Any,
) -> BoxOutTrack:
    """Find and track the target ``expression`` names ("the red circle"): Elysium RSOT.

    The first clip is asked the expression; each later clip starts from the latest valid box when the clip
    before yielded one, and is asked the expression again when it did not. An expression the model has no
    words for is answered like any other (its ``unknown_words`` are in the result).

    Args:
        model / processor / source: as :func:`track_with_llm`.
        expression: the referring expression.
        options: :func:`track_with_llm` keyword arguments (``frame_index``, ``clip_length``, ``stride``,
            ``progress``, ``generate`` arguments).

    Returns:
        A :class:`BoxOutTrack` with per-frame boxes, visibility, status and the generated texts.
    """
    return track_with_llm(model, processor, source, expression=expression, **options)
