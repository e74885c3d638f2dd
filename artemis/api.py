"""``ArtemisModel``: the user's entry point — track a target from one box, describe it, ask about it, ground it.

>>> model = ArtemisModel.from_pretrained("path/to/checkpoint")
>>> result = model.describe("video.mp4", box=(120, 40, 260, 300), frame_index=30)
>>> result.text, result.track.visible.mean()

Several regions, each a box or a mask on a frame of its own (``docs/regions.md``):

>>> answer = model.ask("video.mp4", regions=[Region(box=(120, 40, 260, 300), frame=30),
...                                          Region(mask="dog.png", frame=90)], question="Is <region> near <region>?")

A model trained to write boxes (``tasks: [describe, boxes]``) tracks by itself (Elysium SOT) and finds the
target an expression names (RSOT); both return a track with per-frame status and the generated texts:

>>> track = model.track_with_llm("video.mp4", box=(120, 40, 260, 300), frame_index=30)
>>> found = model.ground("video.mp4", "the red circle")
>>> found.boxes, found.visible, found.status, found.texts, found.num_unparsed

The verbs live in :class:`artemis.tasks.VideoPipeline`; loading in :mod:`artemis.model.loading`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from artemis.errors import ConfigError
from artemis.model import loading
from artemis.model.loading import load_pretrained
from artemis.model.loading import resolve_model_dir as resolve_model_dir
from artemis.model.selector import TokenSelector
from artemis.regions import Region
from artemis.tasks.pipeline import VideoPipeline
from artemis.tasks.referring import Description

logger = logging.getLogger(__name__)

__all__ = ["ArtemisModel", "Description", "Region", "resolve_model_dir"]


class ArtemisModel(VideoPipeline):
    """A tracker, the processor and the HF model behind one small API.

    Generation is greedy and deterministic unless generation keyword arguments say otherwise.
    """

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        log_card: bool = True,
        **options: Any,
    ) -> ArtemisModel:
        """Load a checkpoint written by :meth:`save_pretrained` (safetensors + config + tokenizer).

        Args:
            name_or_path: a local directory, or the name of a bundled model such as ``"synthref-tiny"``.
            device: where to run (``"cpu"``, ``"cuda"``, ...).
            dtype: weights dtype (``torch.bfloat16``, ``"float16"``...); default float32.
            log_card: log what the model was trained on once (its card's caveat as a warning); a caller that
                shows the card itself (the CLI) passes False.
            options: ``tracker``, ``track_stride``, ``track_max_side``, ``video_backend``.
        """
        model, processor, card = load_pretrained(name_or_path, device=device, dtype=dtype)
        if log_card and card.caveat:
            logger.warning("model %s: %s", card.name, card.caveat)
        elif log_card:
            logger.info("model %s", card.describe())
        return cls(model, processor, card=card, **options)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write weights (safetensors), config and tokenizer/processor to ``directory``."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)

    def set_selector(self, method: str) -> None:
        """Switch the token selector at inference (``kmeans``, ``uniform`` or ``random``; the ablation).

        The selector runs in evaluation mode (``random`` draws from a fixed seed, so answers repeat), and the
        model's config is left as it was trained: a checkpoint saved afterwards keeps its own selector.
        ``all`` changes how many tokens a region has, which the trained prompt layout fixes, so it is refused.
        """
        config = self.config
        if method == "all" and config.selector != "all":
            raise ConfigError("selector 'all' changes the region token count; train a model with selector: all")
        selector = TokenSelector(
            method, config.num_selected, config.kmeans_max_iter, False, padding=config.selector_padding
        )
        self.model.selector = selector.eval()


def load_model(*args: Any, **kwargs: Any) -> Any:
    """Deprecated: :func:`artemis.model.loading.load_model`; this alias goes in the next release."""
    warnings.warn("artemis.api.load_model is now artemis.model.loading.load_model", DeprecationWarning, stacklevel=2)
    return loading.load_model(*args, **kwargs)
