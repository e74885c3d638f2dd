"""``ModelService``: one loaded :class:`~artemis.api.ArtemisModel`, used by one request at a time.

The HTTP API and the web demo call the same methods. A model is never run by two threads at once: every
verb takes the service's lock (a streamed description holds it until its last piece). Videos are checked
(readable, at most ``max_frames`` frames) before the lock is taken, so a bad upload never waits in line.

The model's work runs on one thread of the service's own (:class:`ModelThread`), whichever thread calls:
each thread that allocates gets a malloc arena of its own, and memory freed into an arena stays with the
process, so a pool of request threads that took turns running the model would hold many arenas' worth of
the model's working memory (docs/serve.md, "Memory").
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from artemis.api import ArtemisModel
from artemis.boxes import parse_box_arg, validate_box
from artemis.errors import ArtemisError, BoxError, VideoError
from artemis.model.loading import DEFAULT_MODEL, ModelCard
from artemis.prompts import DESCRIBE_QUESTIONS, REGION_TOKEN
from artemis.regions import MaskInput, Region, load_mask, mask_box
from artemis.tasks.box_output import require_task
from artemis.tasks.referring import Description, DescriptionStream
from artemis.track import Track
from artemis.video import opened

logger = logging.getLogger(__name__)

__all__ = [
    "BoxLike",
    "LimitError",
    "LockedStream",
    "ModelService",
    "ModelThread",
    "QuestionError",
    "check_question",
    "read_mask",
]

BoxLike = str | Sequence[float]
T = TypeVar("T")


class LimitError(ArtemisError, ValueError):
    """An input is larger than the server accepts (too many frames, too large an upload)."""


class QuestionError(ArtemisError, ValueError):
    """A question that does not name its regions: one ``<region>`` per region, in the order given."""


class LockedStream:
    """A :class:`~artemis.tasks.referring.DescriptionStream` that holds the service's lock until its last
    piece is read, or until :meth:`close` (call it when you stop reading early).

    Iterate it for the text pieces; afterwards ``description.text`` is the whole text.
    """

    def __init__(self, stream: DescriptionStream, lock: threading.Lock) -> None:
        self.description: Description = stream.description
        self._pieces = iter(stream)
        self._lock = lock
        self._held = True

    def __iter__(self) -> Iterator[str]:
        try:
            # Not ``yield from``: a reader that stops early must not close the model's stream half-way;
            # close() below lets it finish before the model is released.
            for piece in self._pieces:  # noqa: UP028
                yield piece
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading: the model cannot be interrupted, so the rest is generated (unread), then the
        model is released."""
        try:
            for _ in self._pieces:
                pass
        finally:
            self._release()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def __del__(self) -> None:  # a stream dropped unread must not keep the model locked
        if getattr(self, "_held", False):
            self.close()


class ModelThread:
    """One long-lived thread that runs the calls given to :meth:`run`, one at a time, in order.

    A daemon thread: a call still running when the server stops does not hold the process up.
    """

    def __init__(self, name: str = "artemis-model") -> None:
        self._calls: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple, dict]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            future, fn, args, kwargs = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # raised again in the caller's thread
                future.set_exception(error)
            del future, fn, args, kwargs  # hold nothing of a finished call while waiting for the next

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the model thread; blocks the calling thread until it returns."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        future: Future[T] = Future()
        self._calls.put((future, fn, args, kwargs))
        return future.result()


def as_box(box: BoxLike) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` or four numbers, as a tuple of floats (pixels; checked against the frame later)."""
    if isinstance(box, str):
        return parse_box_arg(box)
    values = tuple(float(value) for value in box)
    if len(values) != 4:
        return parse_box_arg(",".join(str(value) for value in values))  # the one message for a bad box
    return values  # type: ignore[return-value]


def check_question(question: str | None, num_regions: int) -> str:
    """The question to ask about ``num_regions`` regions: one ``<region>`` each, or none for one region
    (asked about it as it is); no question about one region asks for a description.

    Raises:
        QuestionError: the placeholders do not match the regions, or several regions have no question.
    """
    if question is None or not question.strip():
        if num_regions == 1:
            return DESCRIBE_QUESTIONS[0]
        raise QuestionError(
            f"no question about the {num_regions} regions; ask one that names each with {REGION_TOKEN}, in "
            f"order, e.g. 'Is {REGION_TOKEN} left of {REGION_TOKEN}?'"
        )
    count = question.count(REGION_TOKEN)
    if count != num_regions and not (count == 0 and num_regions == 1):
        raise QuestionError(
            f"the question names {count} {REGION_TOKEN} placeholder{'s' * (count != 1)} for {num_regions} "
            f"region{'s' * (num_regions != 1)}; name each region once with {REGION_TOKEN}, in the order given"
        )
    return question.strip()


def read_mask(mask: MaskInput, width: int, height: int) -> np.ndarray:
    """A region's mask as a boolean ``(height, width)`` array; a file's or a RLE's size is checked before
    it is decoded, so a huge or non-image upload costs nothing.

    Raises:
        BoxError: not an image, not the video's frame size, empty, or several objects far apart.
    """
    if isinstance(mask, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(mask) as image:
                size = image.size
        except (UnidentifiedImageError, OSError):
            raise BoxError(f"mask {mask} is not an image; send a PNG whose non-zero pixels mark the target") from None
    elif isinstance(mask, Mapping):
        size = tuple(reversed(mask.get("size", ())))
    else:
        size = tuple(reversed(np.shape(mask)[:2]))
    if size != (width, height):
        shown = "x".join(str(v) for v in size)
        raise BoxError(
            f"the mask is {shown} (WxH) but the video is {width}x{height}; give a mask of the video's frame size"
        )
    array = load_mask(mask)
    mask_box(array, width, height)  # empty, or several objects far apart
    return array


class ModelService:
    """One model behind a lock, with the verbs the server and the demo use.

    Args:
        model: a loaded model.
        max_frames: refuse videos longer than this many frames (:class:`LimitError`); ``None``: any length.
    """

    def __init__(self, model: ArtemisModel, *, max_frames: int | None = None) -> None:
        self.model = model
        self.max_frames = max_frames
        self._lock = threading.Lock()
        self._thread = ModelThread()

    @classmethod
    def load(cls, name_or_dir: str | Path = DEFAULT_MODEL, *, max_frames: int | None = None, device: str = "cpu"):
        """Load a checkpoint directory or a bundled model by name (default ``synthref-tiny``)."""
        return cls(ArtemisModel.from_pretrained(name_or_dir, device=device), max_frames=max_frames)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @property
    def tasks(self) -> list[str]:
        return list(self.model.config.tasks)

    @property
    def can_write_boxes(self) -> bool:
        """Whether the model was trained to write boxes (``track_by_model`` and ``ground``)."""
        return "boxes" in self.tasks

    def check_video(self, path: str | Path) -> tuple[int, float, int, int]:
        """``(num_frames, fps, width, height)`` of a readable video of at most ``max_frames`` frames.

        Raises:
            VideoError: the file is not a video, or is corrupt (the message the CLI prints).
            LimitError: the video has more than ``max_frames`` frames.
        """
        with opened(path, backend=self.model.video_backend) as source:
            info = (source.num_frames, float(source.fps), source.width, source.height)
        if self.max_frames is not None and info[0] > self.max_frames:
            raise LimitError(
                f"video {Path(path).name} has {info[0]} frames; this server takes at most {self.max_frames} "
                "(--max-frames); cut the video or sample fewer frames"
            )
        return info

    def track(self, video_path: str | Path, box: BoxLike, frame: int = 0) -> Track:
        """Track the target in ``box`` (pixels ``x1,y1,x2,y2`` on ``frame``) through the video."""
        self.check_video(video_path)
        with self._lock:
            return self._thread.run(self.model.track, video_path, as_box(box), frame)

    def describe(
        self,
        video_path: str | Path,
        box: BoxLike,
        frame: int = 0,
        question: str | None = None,
        max_new_tokens: int | None = None,
    ) -> Description:
        """Describe the target in ``box`` (or answer ``question`` about it, naming it ``<region>``)."""
        return self.ask(video_path, [Region(box=as_box(box), frame=frame)], question, max_new_tokens)  # type: ignore[return-value]

    def describe_stream(
        self,
        video_path: str | Path,
        box: BoxLike,
        frame: int = 0,
        question: str | None = None,
        max_new_tokens: int | None = None,
    ) -> LockedStream:
        """:meth:`describe` with the text streamed; tracking and frame reading are done when it returns.

        The returned stream holds the model until its last piece is read or it is closed.
        """
        region = Region(box=as_box(box), frame=frame)
        return self.ask(video_path, [region], question, max_new_tokens, stream=True)  # type: ignore[return-value]

    def check_regions(self, video_path: str | Path, regions: Sequence[Region]) -> list[Region]:
        """``regions`` checked against the video before the model is taken: each frame within the video,
        each box on its frame, each mask of the frame's size, not empty, one object (masks are read here,
        once, and handed on as arrays). Messages name the region (``region 2 (mask on frame 30): ...``)
        when there are several, or it is a mask.

        Raises:
            VideoError / LimitError: the video (:meth:`check_video`) or a frame past its end.
            BoxError: a bad box or mask.
        """
        num_frames, _, width, height = self.check_video(video_path)
        if not regions:
            raise BoxError("no region given; give at least one box or mask, each on its frame")
        checked = []
        for number, region in enumerate(regions, 1):
            try:
                if not 0 <= region.frame < num_frames:
                    raise VideoError(
                        f"frame {region.frame} is past the end of {video_path} ({num_frames} frames); give a "
                        f"frame in 0..{num_frames - 1}"
                    )
                if region.mask is None:
                    validate_box(region.box, width, height, frame_index=int(region.frame))  # type: ignore[arg-type]
                    checked.append(region)
                else:
                    checked.append(Region(mask=read_mask(region.mask, width, height), frame=region.frame))
            except ArtemisError as error:
                if len(regions) == 1 and region.mask is None:
                    raise
                name = "box" if region.mask is None else "mask"
                raise type(error)(f"region {number} ({name} on frame {region.frame}): {error}") from None
        return checked

    def ask(
        self,
        video_path: str | Path,
        regions: Sequence[Region],
        question: str | None = None,
        max_new_tokens: int | None = None,
        *,
        stream: bool = False,
    ) -> Description | LockedStream:
        """Answer ``question`` about ``regions`` (boxes or masks, each on a frame of its own), one
        ``<region>`` per region in order; no question about one region asks for a description.

        With ``stream=True`` the result is a :class:`LockedStream`, which holds the model until read.
        """
        checked = self.check_regions(video_path, regions)
        question = check_question(question, len(checked))
        generation: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        self._lock.acquire()
        try:
            result = self._thread.run(
                self.model.ask, video_path, regions=checked, question=question, stream=stream, **generation
            )
        except BaseException:
            self._lock.release()
            raise
        if stream:
            return LockedStream(result, self._lock)  # type: ignore[arg-type]
        self._lock.release()
        return result  # type: ignore[return-value]

    def chat(
        self,
        video_path: str | Path,
        regions: Sequence[Region],
        messages: Sequence[dict[str, str]],
        max_new_tokens: int | None = None,
    ) -> Description:
        """Answer the last of ``messages`` (user and assistant turns, alternating) about ``regions``; the
        first user message names the regions with ``<region>``, later ones in words (region1, ...)."""
        checked = self.check_regions(video_path, regions)
        first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        if isinstance(first, str):
            check_question(first, len(checked))
        generation: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        with self._lock:
            return self._thread.run(self.model.chat, video_path, checked, messages, **generation)

    def track_by_model(self, video_path: str | Path, box: BoxLike, frame: int = 0) -> Track:
        """The model writes the target's box on every frame (needs a model trained to write boxes)."""
        self.require_boxes()
        self.check_video(video_path)
        with self._lock:
            return self._thread.run(self.model.track_with_llm, video_path, box=as_box(box), frame_index=frame)

    def ground(self, video_path: str | Path, expression: str) -> Track:
        """Find and track the target a referring expression names ("the red circle")."""
        self.require_boxes()
        self.check_video(video_path)
        with self._lock:
            return self._thread.run(self.model.ground, video_path, expression)

    def require_boxes(self) -> None:
        """Raise the model's one-line :class:`~artemis.errors.ConfigError` (the CLI's) unless it writes boxes."""
        require_task(self.model.config, "boxes", f"model {self.name!r}")
