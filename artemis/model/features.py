"""Precomputed vision features: what the frozen vision tower gives for a video's frames, computed once.

:class:`~artemis.model.modeling.ArtemisForConditionalGeneration` takes ``video_features`` (the pooled
features the projector turns into video tokens) and ``region_hidden_states`` (the region frames' patch
tokens at ``region_feature_layers``) in place of pixels. :class:`VisionFeatureExtractor` computes both with
the model's own code (``_vision_hidden_states`` and ``pool_video_features``), so feeding them back gives
the same tokens as the pixels. :func:`vision_fingerprint` names the vision weights, so that features are
never used with another vision tower than the one that made them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoModel

from artemis.errors import CheckpointError, ConfigError
from artemis.model.configuration import ArtemisConfig
from artemis.model.modeling import ArtemisForConditionalGeneration

__all__ = ["VisionFeatureExtractor", "vision_fingerprint"]

_PREFIX = "vision_tower."


def vision_fingerprint(vision_tower: nn.Module) -> str:
    """A hash of the vision tower's weights (names, shapes and values), 16 hex digits.

    Values are hashed after rounding to bfloat16, so one checkpoint loaded in float32 or bfloat16 gives
    the same fingerprint (the features differ by rounding only), while any other weights give another.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(vision_tower.state_dict().items()):
        values = tensor.detach().to(device="cpu", dtype=torch.bfloat16).contiguous()
        digest.update(f"{name}:{tuple(values.shape)};".encode())
        digest.update(values.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def _vision_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The ``vision_tower.*`` tensors of a safetensors checkpoint (single file or sharded), prefix removed."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({file for name, file in weight_map.items() if name.startswith(_PREFIX)})
    else:
        files = ["model.safetensors"] if (directory / "model.safetensors").is_file() else []
    weights = {}
    for file in files:
        with safe_open(str(directory / file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                if name.startswith(_PREFIX):
                    weights[name[len(_PREFIX) :]] = handle.get_tensor(name)
    if not weights:
        raise CheckpointError(
            f"no vision_tower weights in {directory} (expected model.safetensors or model.safetensors.index.json "
            "written by save_pretrained); vision features need the model directory with its weights, not only "
            "its config.json"
        )
    return weights


class VisionFeatureExtractor:
    """The model's feature inputs for the frames of one video, in inference mode.

    Args:
        model: the model whose vision tower and pooling are used (only those parts are touched).
        batch_size: frames per vision-tower pass (bounds memory on long videos).
    """

    def __init__(self, model: ArtemisForConditionalGeneration, batch_size: int = 32) -> None:
        if model.config.frame_stem_grid:
            raise ConfigError(
                f"this model's frame tokens read the frames' pixels through a pixel stem (frame_stem_grid="
                f"{model.config.frame_stem_grid}), which cached vision features do not hold; train and run it on "
                "frames, without a features cache"
            )
        self.model = model
        self.batch_size = int(batch_size)
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> VisionFeatureExtractor:
        """Load only the vision tower of a checkpoint directory (the LLM is never materialised).

        Raises:
            CheckpointError: no vision weights in ``directory``, or they do not fit its config.
        """
        import artemis.model  # noqa: F401 - registers model_type "artemis" with AutoConfig

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory} is not a model directory; vision features need the saved weights")
        config = ArtemisConfig.from_pretrained(directory, local_files_only=True)
        with torch.device("meta"):  # every part but the vision tower stays without storage
            model = ArtemisForConditionalGeneration(config)
        model.vision_tower = AutoModel.from_config(config.vision_config)
        try:
            model.vision_tower.load_state_dict(_vision_weights(directory), strict=True)
        except RuntimeError as error:
            raise CheckpointError(
                f"the vision weights in {directory} do not fit its config.json ({str(error)[:300]}); check that "
                "config.json was saved with these weights"
            ) from error
        model.vision_tower.to(device=device, dtype=dtype).eval()
        return cls(model, batch_size)

    @property
    def config(self) -> ArtemisConfig:
        return self.model.config

    @property
    def fingerprint(self) -> str:
        """:func:`vision_fingerprint` of the vision tower (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = vision_fingerprint(self.model.vision_tower)
        return self._fingerprint

    @torch.no_grad()
    def __call__(
        self, pixels: torch.Tensor, video_rows: Sequence[int], region_rows: Sequence[int]
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]:
        """Features of one video from the pixels of the distinct frames it needs.

        Args:
            pixels: (U, 3, S, S) processed frames.
            video_rows: rows of ``pixels`` that are the video-token frames, in time order.
            region_rows: rows whose region-level hidden states are wanted.

        Returns:
            ``(video_features, region_hidden_states)``: (num_frames + P, C_v) — the model's
            ``pool_video_features`` of the video frames, or None without ``video_rows`` — and one
            (len(region_rows), P, C_v) tensor per ``region_feature_layers``. On the vision tower's device
            and dtype.
        """
        config = self.model.config
        video_rows, region_rows = list(video_rows), list(region_rows)
        video_set, region_set = set(video_rows), set(region_rows)
        video_parts: dict[int, torch.Tensor] = {}  # row -> (P, C)
        region_parts: dict[int, list[torch.Tensor]] = {}  # row -> per level (P, C)
        for start in range(0, len(pixels), self.batch_size):
            rows = range(start, min(start + self.batch_size, len(pixels)))
            wanted = [row for row in rows if row in video_set or row in region_set]
            if not wanted:
                continue
            layers = [config.vision_feature_layer, *config.region_feature_layers]
            states = self.model._vision_hidden_states(pixels[wanted], layers)  # each (n, P, C)
            for position, row in enumerate(wanted):
                if row in video_set:
                    video_parts[row] = states[config.vision_feature_layer][position]
                if row in region_set:
                    region_parts[row] = [states[layer][position] for layer in config.region_feature_layers]
        video = None
        if video_rows:
            patches = torch.stack([video_parts[row] for row in video_rows])[None]  # (1, T, P, C)
            mask = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)  # (1, T)
            video = self.model.pool_video_features(patches, mask)[0]  # (N_v, C)
        levels = tuple(
            torch.stack([region_parts[row][level] for row in region_rows])
            if region_rows
            else pixels.new_zeros(0, config.patches_per_side**2, config.vision_config.hidden_size)
            for level in range(len(config.region_feature_layers))
        )  # each (len(region_rows), P, C)
        return video, levels
