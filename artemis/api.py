"""``ArtemisModel``: the user's entry point — track a target from one box, describe it, ask about it.

>>> model = ArtemisModel.from_pretrained("path/to/checkpoint")
>>> result = model.describe("video.mp4", box=(120, 40, 260, 300), frame_index=30)
>>> result.text, result.track.visible.mean()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artemis.boxes import BoxFormat, validate_box
from artemis.errors import CheckpointError, ConfigError, VideoError
from artemis.model.configuration import ArtemisConfig
from artemis.model.inputs import build_video_inputs
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.templates import DESCRIBE_QUESTIONS, referring_prompt
from artemis.track import Track, track_video
from artemis.video import VideoReader

logger = logging.getLogger(__name__)

Box = Sequence[float] | np.ndarray


@dataclass
class Description:
    """What :meth:`ArtemisModel.describe` and :meth:`ArtemisModel.ask` return."""

    text: str
    question: str
    tracks: list[Track]
    video_frames: list[int]
    region_frames: list[int]
    region_visible: list[list[bool]] = field(default_factory=list)

    @property
    def track(self) -> Track:
        """The track of the first (usually only) region."""
        return self.tracks[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "question": self.question,
            "video_frames": self.video_frames,
            "region_frames": self.region_frames,
            "region_visible": self.region_visible,
            "tracks": [track.to_json() for track in self.tracks],
        }


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A local checkpoint directory, or the name of a model shipped in the package."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    bundled = Path(__file__).resolve().parent / "assets" / str(name_or_path)
    if bundled.is_dir():
        return bundled
    raise CheckpointError(
        f"model {str(name_or_path)!r} is neither a local directory nor a bundled model; pass the directory "
        f"written by save_pretrained (artemis never downloads weights)"
    )


class ArtemisModel:
    """A reader, a tracker, the processor and the HF model behind one small API.

    Generation is greedy and deterministic unless generation keyword arguments say otherwise.
    """

    def __init__(
        self,
        model: ArtemisForConditionalGeneration,
        processor: ArtemisProcessor,
        *,
        tracker: str = "opencv-csrt",
        track_stride: int = 1,
        track_max_side: int | None = None,
        video_backend: str = "auto",
    ):
        self.model = model.eval()
        self.processor = processor
        self.tracker = tracker
        self.track_stride = track_stride
        self.track_max_side = track_max_side
        self.video_backend = video_backend

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        **options: Any,
    ) -> ArtemisModel:
        """Load a checkpoint written by :meth:`save_pretrained` (safetensors + config + tokenizer).

        Args:
            name_or_path: a local directory, or the name of a bundled model such as ``"synthref-tiny"``.
            device: where to run (``"cpu"``, ``"cuda"``, ...).
            dtype: weights dtype (``torch.bfloat16``, ``"float16"``...); default float32.
            options: ``tracker``, ``track_stride``, ``track_max_side``, ``video_backend``.
        """
        directory = resolve_model_dir(name_or_path)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        try:
            config = ArtemisConfig.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(f"no Artemis config in {directory}: {error}") from error
        processor = ArtemisProcessor.from_pretrained(directory, config)
        model = load_model(directory, config, dtype=dtype or torch.float32).to(device)
        return cls(model, processor, **options)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write weights (safetensors), config and tokenizer/processor to ``directory``."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)

    @property
    def config(self) -> ArtemisConfig:
        return self.model.config

    def set_selector(self, method: str) -> None:
        """Switch the token selector at inference (``kmeans``, ``uniform`` or ``random``; the ablation).

        ``all`` changes how many tokens a region has, which the trained prompt layout fixes, so it is refused.
        """
        from artemis.model.selector import TokenSelector

        if method == "all" and self.config.selector != "all":
            raise ConfigError("selector 'all' changes the region token count; train a model with selector: all")
        config = self.config
        self.model.selector = TokenSelector(method, config.num_selected, config.kmeans_max_iter, False)
        config.selector = method

    # --- the three verbs ----------------------------------------------------------------------------

    def _open(self, video: str | Path | VideoReader) -> VideoReader:
        if isinstance(video, VideoReader):
            return video
        return VideoReader(video, backend=self.video_backend)

    def track(
        self,
        video: str | Path | VideoReader,
        box: Box,
        frame_index: int = 0,
        *,
        box_format: BoxFormat = "xyxy",
        progress: bool = False,
    ) -> Track:
        """Track the target in ``box`` (pixels on ``frame_index``) forward and backward over the video."""
        reader = self._open(video)
        return track_video(
            reader,
            box,
            frame_index,
            tracker=self.tracker,
            box_format=box_format,
            stride=self.track_stride,
            max_side=self.track_max_side,
            progress=progress,
        )

    def track_with_llm(
        self,
        video: str | Path | VideoReader,
        box: Box | None = None,
        frame_index: int = 0,
        *,
        expression: str | None = None,
        box_format: BoxFormat = "xyxy",
        **options: Any,
    ) -> Track:
        """The LLM writes the target's box on every frame (Elysium box output; ``video_layout="frames"``).

        SOT: ``box`` on ``frame_index``. RSOT: ``expression`` ("the red circle"). Returns an
        :class:`artemis.boxout.BoxOutTrack` (a :class:`Track` with per-frame parse status and the generated
        texts). ``options``: ``clip_length``, ``stride`` and ``generate`` keyword arguments. See
        :func:`artemis.boxout.track_with_llm`.
        """
        from artemis.boxout import track_with_llm

        return track_with_llm(
            self, video, box=box, frame_index=frame_index, expression=expression, box_format=box_format, **options
        )

    def describe(
        self,
        video: str | Path | VideoReader,
        box: Box,
        frame_index: int = 0,
        question: str | None = None,
        *,
        box_format: BoxFormat = "xyxy",
        track: Track | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Description:
        """Describe the target in ``box`` across the whole video.

        Args:
            video: a video file, a frame folder or an open reader.
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
            **generation,
        )

    def ask(
        self,
        video: str | Path | VideoReader,
        boxes: Box | Sequence[Box],
        question: str,
        frame_index: int = 0,
        *,
        box_format: BoxFormat = "xyxy",
        tracks: Sequence[Track] | None = None,
        progress: bool = False,
        **generation: Any,
    ) -> Description:
        """Answer ``question`` about one or several targets, all given on ``frame_index``.

        ``question`` names the targets with ``<region>`` placeholders, one per box in order; with one box
        and no placeholder the question is asked as it is, about that box.
        """
        reader = self._open(video)
        box_list = _as_box_list(boxes)
        if not 0 <= frame_index < reader.num_frames:
            raise VideoError(
                f"frame index {frame_index} is past the end of {reader.path.name} "
                f"({reader.num_frames} frames, 0..{reader.num_frames - 1})"
            )
        for box in box_list:
            validate_box(box, reader.width, reader.height, box_format=box_format, frame_index=frame_index)
        if tracks is None:
            tracks = [
                self.track(reader, box, frame_index, box_format=box_format, progress=progress) for box in box_list
            ]
        elif len(tracks) != len(box_list):
            raise ValueError(f"got {len(tracks)} tracks for {len(box_list)} boxes; give one track per box")
        for track in tracks:
            if not track.visible[frame_index]:
                raise VideoError(f"the given track has no visible box on the key frame {frame_index}")
            if track.visible.sum() <= 1:
                logger.warning("the target is visible on the key frame only; describing it from that frame")

        inputs = build_video_inputs(
            reader,
            frame_index,
            [track.boxes for track in tracks],
            [track.visible for track in tracks],
            self.config,
            self.processor.video_processor,
        )
        prompt = referring_prompt(question, num_regions=len(box_list))
        encoded = self.processor.encode_conversation([(prompt, None)])
        batch = self.processor.pad([encoded], side="left")
        text = self._generate(batch, inputs.tensors, generation)
        return Description(
            text=text,
            question=question,
            tracks=list(tracks),
            video_frames=inputs.video_frames.tolist(),
            region_frames=inputs.region_frames.tolist(),
            region_visible=inputs.region_visible.tolist(),
        )

    @torch.inference_mode()
    def _generate(self, batch: dict[str, torch.Tensor], visual: dict[str, torch.Tensor], options: dict) -> str:
        device = self.model.device
        dtype = self.model.dtype
        tensors = {
            name: value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
            for name, value in visual.items()
        }
        tokenizer = self.processor.tokenizer
        # The placeholders are slots for features, never words to write.
        placeholders = [[self.config.video_token_id], [self.config.region_token_id]]
        settings = {"max_new_tokens": 64, "do_sample": False, "num_beams": 1, "bad_words_ids": placeholders}
        settings.update(options)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        output = self.model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
            **tensors,
            **settings,
        )
        new_tokens = output[0, batch["input_ids"].shape[1] :]
        return self.processor.decode(new_tokens)


def _as_box_list(boxes: Box | Sequence[Box]) -> list[np.ndarray]:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1:
        return [array]
    if array.ndim == 2:
        return list(array)
    raise ValueError(f"expected one box (4 numbers) or a list of boxes, got an array of shape {array.shape}")


def load_model(
    directory: str | Path, config: ArtemisConfig, dtype: torch.dtype = torch.float32, quantization_config: Any = None
) -> ArtemisForConditionalGeneration:
    """Load weights with a clear error when their shapes do not match the config.

    ``quantization_config`` (a ``BitsAndBytesConfig``) quantises the layers it selects while loading.
    """
    try:
        model, info = ArtemisForConditionalGeneration.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            local_files_only=True,
            output_loading_info=True,
            quantization_config=quantization_config,
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(
            f"the weights in {directory} do not fit its config ({error.__class__.__name__}: {str(error)[:400]}); "
            f"check that config.json was saved with these weights"
        ) from error
    problems = {key: value for key, value in info.items() if value and key != "unexpected_keys"}
    if problems.get("mismatched_keys") or problems.get("missing_keys"):
        missing = list(problems.get("missing_keys", []))[:5]
        mismatched = [str(item) for item in list(problems.get("mismatched_keys", []))[:5]]
        raise CheckpointError(
            f"the weights in {directory} do not fit its config: missing {missing}, mismatched {mismatched}; "
            f"check that config.json was saved with these weights"
        )
    return model
