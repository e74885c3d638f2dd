"""``VideoPipeline``: a model, its processor and tracker settings behind the verbs users call.

``track`` (a tracker from one box), ``describe`` / ``ask`` (referring), ``describe_batch`` (several
requests in one padded generation), ``track_with_llm`` and ``ground`` (box output: SOT and RSOT).
:class:`artemis.ArtemisModel` is this pipeline with loading and saving; evaluation takes a pipeline, so it
never needs the user facade.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artemis.boxes import BoxFormat, validate_box
from artemis.errors import VideoError, is_int
from artemis.model.configuration import ArtemisConfig
from artemis.model.generation import ConversationCache
from artemis.model.loading import ModelCard
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.prompts import DESCRIBE_QUESTIONS
from artemis.regions import Region, load_mask, mask_box
from artemis.tasks.box_output import BoxOutTrack, ground, track_with_llm
from artemis.tasks.referring import (
    Description,
    DescriptionStream,
    answer_batch,
    answer_chat,
    answer_stream,
    prepare,
    prepare_chat,
)
from artemis.track import FAST_TRACKER, Track, track_targets, track_video
from artemis.video import VideoSource, available_backends, open_video, opened
from artemis.video.keep import FrameKeeper

logger = logging.getLogger(__name__)

__all__ = ["Box", "DescribeRequest", "VideoInput", "VideoPipeline"]

Box = Sequence[float] | np.ndarray
VideoInput = str | Path | VideoSource | np.ndarray


@dataclass
class DescribeRequest:
    """One request of :meth:`VideoPipeline.describe_batch` (a tuple ``(video, box, frame_index[, question])``
    is read as one).

    Attributes:
        video: a video file, a frame folder, frames or an open source.
        box: the target on ``frame_index``, pixels (``box_format`` of the call).
        frame_index: the frame the box is on.
        question: names the target as ``<region>``; default "What is the <region> doing in this video?".
        track: boxes on every frame to use instead of running the tracker.
    """

    video: VideoInput
    box: Box
    frame_index: int = 0
    question: str | None = None
    track: Track | None = None

    @classmethod
    def of(cls, request: DescribeRequest | Sequence[Any]) -> DescribeRequest:
        if isinstance(request, DescribeRequest):
            return request
        if not 2 <= len(request) <= 4:
            raise ValueError(
                f"a describe request is (video, box, frame_index[, question]) or a DescribeRequest; got {len(request)} "
                "values"
            )
        return cls(*request)


def as_box_list(boxes: Box | Sequence[Box]) -> list[np.ndarray]:
    """One box (4 numbers) or several, as a list of arrays."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1:
        return [array]
    if array.ndim == 2:
        return list(array)
    raise ValueError(f"expected one box (4 numbers) or a list of boxes, got an array of shape {array.shape}")


def _check_frame(source: VideoSource, frame_index: int) -> None:
    if not 0 <= frame_index < source.num_frames:
        raise VideoError(
            f"frame index {frame_index} is past the end of {Path(str(source.path)).name} "
            f"({source.num_frames} frames, 0..{source.num_frames - 1})"
        )


class VideoPipeline:
    """A model, its processor and the tracker settings; every verb opens (and closes) what it reads.

    Args:
        model / processor: the HF model and its processor.
        card: what the model says about itself (name, what it was trained on).
        tracker: tracker name (:data:`artemis.track.TRACKER_NAMES`).
        track_stride / track_max_side: tracker speed settings (see ``docs/tracking.md``): ``"auto"`` tracks
            every 8th frame of a video of 192 frames or more and at least 24 frames (all, if fewer) of a shorter one.
        video_backend: decoder for video files (``auto``, ``decord``, ``pyav``, ``opencv``).
    """

    def __init__(
        self,
        model: ArtemisForConditionalGeneration,
        processor: ArtemisProcessor,
        *,
        card: ModelCard | None = None,
        tracker: str = FAST_TRACKER,
        track_stride: int | str = "auto",
        track_max_side: int | None = 320,
        video_backend: str = "auto",
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.card = card or ModelCard(name=str(getattr(model.config, "name_or_path", "") or "model"))
        self.tracker = tracker
        self.track_stride = track_stride
        self.track_max_side = track_max_side
        self.video_backend = video_backend
        self.chat_cache = ConversationCache(capacity=1)  # chat's last conversation (docs/regions.md)

    @property
    def config(self) -> ArtemisConfig:
        return self.model.config

    def open(self, video: VideoInput) -> VideoSource:
        """A video source for ``video`` (a path, frames, or a source, returned as it is)."""
        return open_video(video, backend=self.video_backend)

    def track(
        self,
        video: VideoInput,
        box: Box,
        frame_index: int = 0,
        *,
        box_format: BoxFormat = "xyxy",
        progress: bool = False,
    ) -> Track:
        """Track the target in ``box`` (pixels on ``frame_index``) forward and backward over the video."""
        with opened(video, backend=self.video_backend) as source:
            return track_video(
                source,
                box,
                frame_index,
                tracker=self.tracker,
                box_format=box_format,
                stride=self.track_stride,
                max_side=self.track_max_side,
                progress=progress,
            )

    def describe(
        self,
        video: VideoInput,
        box: Box,
        frame_index: int = 0,
        question: str | None = None,
        *,
        box_format: BoxFormat = "xyxy",
        track: Track | None = None,
        progress: bool = False,
        stream: bool = False,
        **generation: Any,
    ) -> Description | DescriptionStream:
        """Describe the target in ``box`` across the whole video (``stream=True``: see :meth:`ask`).

        Args:
            video: a video file, a frame folder, frames or an open source.
            box: the target on ``frame_index``, pixels, ``xyxy`` (or ``xywh`` with ``box_format``).
            question: a question naming the target as ``<region>``; default "What is the <region> doing
                in this video?".
            track: boxes on every frame to use instead of running the tracker.
            generation: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ...).
        """
        return self.ask(
            video,
            [box],
            question or DESCRIBE_QUESTIONS[0],
            frame_index,
            box_format=box_format,
            tracks=None if track is None else [track],
            progress=progress,
            stream=stream,
            **generation,
        )

    def ask(
        self,
        video: VideoInput,
        boxes: Box | Sequence[Box] | None = None,
        question: str | None = None,
        frame_index: int = 0,
        *,
        regions: Sequence[Region] | None = None,
        box_format: BoxFormat = "xyxy",
        tracks: Sequence[Track] | None = None,
        progress: bool = False,
        stream: bool = False,
        **generation: Any,
    ) -> Description | DescriptionStream:
        """Answer ``question`` about one or several targets.

        The targets are either ``boxes``, all on ``frame_index``, or ``regions``: :class:`~artemis.regions.Region`
        s, each a box or a mask on a frame of its own (``Region(box=(x1, y1, x2, y2), frame=30)``). Every
        target is tracked from its own frame, all of them in one pass over the video (one decode).

        ``question`` names the targets with ``<region>`` placeholders, one per target in order (the
        prompt then calls them region1, region2, ..., the layout of the training data); with one target and
        no placeholder the question is asked as it is, about that target. With ``stream=True`` the result
        is a :class:`~artemis.tasks.referring.DescriptionStream`: iterate it to receive the text as it is
        generated (tracking and frame reading are done before it returns).
        """
        if question is None:
            raise ValueError("ask needs a question; name the targets in it with <region>, one per target")
        if (boxes is None) == (regions is None):
            raise ValueError("ask takes boxes (all on frame_index) or regions=[Region(...), ...], exactly one of them")
        with opened(video, backend=self.video_backend) as opened_source:
            source = self._keeper(opened_source, frame_index if regions is None else _first_frame(regions), tracks)
            masks = None
            if regions is None:
                box_list = as_box_list(boxes)
                frames = [frame_index] * len(box_list)
            else:
                box_list, frames, masks = self._resolve_regions(source, regions, box_format)
                box_format = "xyxy"
            tracks = self._region_tracks(source, box_list, frames, box_format, tracks, progress)
            key: int | list[int] = frames[0] if len(set(frames)) == 1 else frames
            if stream:  # reads the frames before it returns
                model, processor = self.model, self.processor
                return answer_stream(model, processor, source, tracks, question, key, masks=masks, **generation)
            prepared = prepare(self.processor, source, tracks, question, key, masks)
        # The video is closed before generating: a decoder left open may keep decoding ahead in the
        # background (decord buffers a few hundred frames after a seek: +250 MB at 640x272, measured).
        return answer_batch(self.model, self.processor, [prepared], **generation)[0]

    def chat(
        self,
        video: VideoInput,
        regions: Sequence[Region],
        messages: Sequence[dict[str, str]],
        *,
        box_format: BoxFormat = "xyxy",
        tracks: Sequence[Track] | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Description:
        """Answer the last of ``messages`` about ``regions``, keeping the earlier turns.

        ``messages`` alternate ``{"role": "user", "content": ...}`` and ``{"role": "assistant", ...}``,
        ending with the user's new question. The first user message names the regions with ``<region>``
        (one per region, in order); later messages name them in words (region1, region2, ...). The
        video and the region tokens stand once, in the first turn; the result's ``messages`` is the
        conversation with the answer appended, ready for the next question.

        When ``messages`` continue the conversation of the previous ``chat`` call (same video, regions and
        tracks; earlier turns and answers unchanged), generation starts from that call's KV cache
        (:attr:`chat_cache`, one conversation kept) and only the new turn is prefilled.
        """
        with opened(video, backend=self.video_backend) as opened_source:
            source = self._keeper(opened_source, _first_frame(regions), tracks)
            box_list, frames, masks = self._resolve_regions(source, regions, box_format)
            tracks = self._region_tracks(source, box_list, frames, "xyxy", tracks, progress)
            key: int | list[int] = frames[0] if len(set(frames)) == 1 else frames
            prepared = prepare_chat(self.processor, source, tracks, messages, key, masks)
        # Generated with the video closed, as in :meth:`ask`.
        return answer_chat(self.model, self.processor, prepared, conversation=self.chat_cache, **generation)

    def _keeper(self, source: VideoSource, key_frame: Any, tracks: Sequence[Track] | None) -> VideoSource:
        """``source``, keeping the frames the model will likely be shown as the tracker's pass reads them.

        The guess is the processor's frame plan for a target visible on every frame, given on ``key_frame``:
        the video frames are exact, the tracked frames are right whenever the target stays in view, and a
        frame guessed wrong is only read afterwards (docs/tracking.md, "The model's frames are read during
        tracking"). With ``tracks`` given nothing is tracked, so nothing is kept.
        """
        num_frames = int(source.num_frames)
        if tracks is not None or not is_int(key_frame, 0, num_frames - 1):
            return source  # an invalid frame is reported by the checks that follow
        everywhere = (np.zeros((num_frames, 4)), np.ones(num_frames, dtype=bool))
        plan = self.processor.plan(num_frames, source.width, source.height, int(key_frame), [everywhere])
        return FrameKeeper(source, [*plan.video_frames.tolist(), *plan.region_frames.tolist()])

    @staticmethod
    def _resolve_regions(
        source: VideoSource, regions: Sequence[Region], box_format: BoxFormat
    ) -> tuple[list[np.ndarray], list[int], list[np.ndarray | None]]:
        """Each region's pixel ``xyxy`` box (a mask's tight box), its frame and its (H, W) mask or None."""
        if not regions:
            raise ValueError("regions is empty; give at least one Region(box=..., frame=...)")
        box_list, frames, masks = [], [], []
        for region in regions:
            if not isinstance(region, Region):
                raise TypeError(f"regions holds {region!r}; expected Region(box=..., frame=...) or Region(mask=...)")
            _check_frame(source, int(region.frame))
            mask = None
            if region.mask is None:
                box = validate_box(
                    region.box, source.width, source.height, box_format=box_format, frame_index=int(region.frame)
                )
            else:
                mask = load_mask(region.mask)
                box = mask_box(mask, source.width, source.height)
            box_list.append(np.asarray(box, dtype=np.float64))
            frames.append(int(region.frame))
            masks.append(mask)
        return box_list, frames, masks

    def describe_batch(
        self,
        requests: Sequence[DescribeRequest | Sequence[Any]],
        *,
        batch_size: int | None = None,
        box_format: BoxFormat = "xyxy",
        progress: bool = False,
        **generation: Any,
    ) -> list[Description]:
        """Describe several targets (of one video or several) with one padded ``generate`` call per batch.

        Each request is tracked and its frames read as :meth:`describe` does (one video open at a time);
        the prompts are then padded on the left and generated together, so greedy texts are those of
        :meth:`describe` one by one, faster where the batch keeps the cores busy.

        Args:
            requests: :class:`DescribeRequest`s or tuples ``(video, box, frame_index[, question])``.
            batch_size: requests per ``generate`` call (default: all at once); items are built per batch,
                so only one batch's frames are held in memory.
            box_format: how every box is given (``xyxy`` or ``xywh``, pixels).
            generation: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ...).

        Returns:
            One :class:`Description` per request, in order.
        """
        wanted = [DescribeRequest.of(request) for request in requests]
        size = batch_size or max(len(wanted), 1)
        if size < 1:
            raise ValueError(f"batch_size={batch_size}; expected a positive number of requests per generate call")
        descriptions: list[Description] = []
        for start in range(0, len(wanted), size):
            prepared = []
            for request in wanted[start : start + size]:
                with opened(request.video, backend=self.video_backend) as opened_source:
                    given = None if request.track is None else [request.track]
                    source = self._keeper(opened_source, request.frame_index, given)
                    tracks = self._region_tracks(
                        source, as_box_list(request.box), request.frame_index, box_format, given, progress
                    )
                    question = request.question or DESCRIBE_QUESTIONS[0]
                    prepared.append(prepare(self.processor, source, tracks, question, request.frame_index))
            descriptions += answer_batch(self.model, self.processor, prepared, **generation)
        return descriptions

    def _region_tracks(
        self,
        source: VideoSource,
        box_list: list[np.ndarray],
        frames: int | Sequence[int],
        box_format: BoxFormat,
        tracks: Sequence[Track] | None,
        progress: bool,
    ) -> Sequence[Track]:
        """Check the frame indices and boxes against ``source``; the given tracks, or one tracked per box.

        One box is tracked by :func:`~artemis.track.track_video` (forward and backward at once); several
        by :func:`~artemis.track.track_targets`, each from its own frame in one decode of the video.
        """
        frames = [frames] * len(box_list) if isinstance(frames, (int, np.integer)) else list(frames)
        for box, frame in zip(box_list, frames, strict=True):
            _check_frame(source, frame)
            validate_box(box, source.width, source.height, box_format=box_format, frame_index=frame)
        if tracks is not None:
            if len(tracks) != len(box_list):
                raise ValueError(f"got {len(tracks)} tracks for {len(box_list)} boxes; give one track per box")
            return tracks
        # The tracking pass stores the frames the keeper (:meth:`_keeper`) was asked to keep, for the model.
        with source.keeping() if isinstance(source, FrameKeeper) else contextlib.nullcontext():
            if len(box_list) == 1:
                return [self.track(source, box_list[0], frames[0], box_format=box_format, progress=progress)]
            return track_targets(
                source,
                box_list,
                frames,
                tracker=self.tracker,
                box_format=box_format,
                stride=self.track_stride,
                max_side=self.track_max_side,
            )

    def _box_output_backend(self, video: VideoInput) -> str:
        """The video backend of :meth:`track_with_llm` and :meth:`ground`, which decode between generations.

        With ``"auto"`` and a video file, PyAV when it imports: decord's decoding thread keeps reading ahead
        while the model generates, so those frames pile up with the video's length (a 600-frame 640x272
        video: +300 MB of peak RSS over a 40-frame one with decord, +1 MB with PyAV; docs/box_output.md,
        "Memory"). Frame folders, image lists, arrays and open sources are opened as before.
        """
        if self.video_backend != "auto" or "pyav" not in available_backends():
            return self.video_backend
        is_file = isinstance(video, (str, os.PathLike)) and Path(video).is_file()
        return "pyav" if is_file else "auto"

    @contextlib.contextmanager
    def _box_output_video(self, video: VideoInput) -> Iterator[VideoSource]:
        """``video`` opened with :meth:`_box_output_backend`; a file PyAV cannot read gets the usual choice."""
        backend = self._box_output_backend(video)
        if backend == self.video_backend:
            with opened(video, backend=backend) as source:
                yield source
            return
        try:
            source = open_video(video, backend=backend)
        except VideoError:  # "auto" may still read it with decord or OpenCV
            source = open_video(video, backend=self.video_backend)
        try:
            yield source
        finally:
            source.close()  # a file path: this call opened it

    def track_with_llm(
        self,
        video: VideoInput,
        box: Box | None = None,
        frame_index: int = 0,
        *,
        expression: str | None = None,
        box_format: BoxFormat = "xyxy",
        progress: bool = False,
        **options: Any,
    ) -> BoxOutTrack:
        """The LLM writes the target's box on every frame (Elysium box output; the model's ``tasks`` must
        include ``"boxes"``).

        SOT: ``box`` on ``frame_index``; clips run forward to the end and backward to frame 0. RSOT: see
        :meth:`ground`. Returns a :class:`~artemis.tasks.box_output.BoxOutTrack` (a :class:`Track` with
        per-frame parse status and the generated texts). ``options``: ``clip_length``, ``stride``,
        ``template`` (see :func:`~artemis.tasks.box_output.track_with_llm`) and ``generate`` keyword arguments.
        Frames are read clip by clip, so memory does not grow with the video.
        """
        with self._box_output_video(video) as source:
            return track_with_llm(
                self.model,
                self.processor,
                source,
                box=box,
                frame_index=frame_index,
                expression=expression,
                box_format=box_format,
                model_name=f"model {self.card.name!r}",
                progress=progress,
                **options,
            )

    def ground(
        self, video: VideoInput, expression: str, frame_index: int = 0, *, progress: bool = False, **options: Any
    ) -> BoxOutTrack:
        """Find and track the target ``expression`` names ("the red circle") on every frame (Elysium RSOT).

        The first clip is asked the expression; a later clip starts from the latest valid box, or is asked
        the expression again when the clip before found nothing (``docs/box_output.md``).

        Args:
            video: a video file, a frame folder, frames or an open source.
            expression: the referring expression.
            frame_index: the frame to start from (clips run forward, then backward from it).
            progress: show a progress bar over the clips.
            options: ``clip_length``, ``stride``, ``template`` and ``generate`` keyword arguments
                (``max_new_tokens``...).

        Returns:
            A :class:`~artemis.tasks.box_output.BoxOutTrack`: per-frame boxes, visibility and status, the
            generated texts, and the expression's ``unknown_words``.

        Raises:
            ConfigError: the model was not trained to write boxes, or the expression is empty.
        """
        with self._box_output_video(video) as source:
            return ground(
                self.model,
                self.processor,
                source,
                expression,
                frame_index=frame_index,
                model_name=f"model {self.card.name!r}",
                progress=progress,
                **options,
            )


def _first_frame(regions: Sequence[Region] | None) -> Any:
    """The first region's frame, or None when there is none to read (the region checks then say why)."""
    return getattr(regions[0], "frame", None) if regions else None
