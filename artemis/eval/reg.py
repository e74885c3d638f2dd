"""Video-REG: a model describes each record's target; the descriptions are scored with pycocoevalcap.

:class:`RegPredictor` makes one record's line of ``predictions.jsonl``; :func:`run_reg` runs it over a data
set with the resumable runner (:func:`artemis.eval.runner.run_predictions`), scores the captions
(:func:`artemis.eval.captions.score_captions`) and writes ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artemis.data.records import RefSample
from artemis.errors import AnnotationError
from artemis.eval.captions import score_captions
from artemis.eval.runner import Shard, finish_run, run_predictions
from artemis.eval.samples import open_sample
from artemis.tasks.pipeline import VideoPipeline
from artemis.track import Track

__all__ = ["REG_FORMATS", "RegPredictor", "RegResult", "caption_samples", "run_reg"]

REG_FORMATS = ("videoref45k", "elysium", "hcstvg")
"""Data formats whose records carry a caption of their target."""


def caption_samples(samples: Sequence[RefSample], path: Path) -> list[RefSample]:
    """The records that have a caption (or answer) to compare with.

    Raises:
        AnnotationError: none has.
    """
    kept = [s for s in samples if s.caption or s.answer]
    if not kept:
        raise AnnotationError(f"{path}: no record has a caption to compare with")
    return kept


@dataclass
class RegPredictor:
    """Describe a record's target from its key-frame box over the whole video.

    The record's boxes (placed at their frame ids) are the track where it has boxes on more than the key
    frame; otherwise, or with ``use_tracker``, the pipeline's tracker runs.

    Attributes:
        pipeline: the model.
        use_tracker: run the tracker even where the record gives boxes.
        max_new_tokens: generation length.
    """

    pipeline: VideoPipeline
    use_tracker: bool = False
    max_new_tokens: int = 64

    def __call__(self, sample: RefSample) -> dict[str, Any]:
        """One line of ``predictions.jsonl``: ``prediction``, ``references`` and ``given_track``."""
        with open_sample(sample, whole_video=True) as (video, positions):
            key = positions[sample.key_index]
            boxes: list[Any] = [None] * video.num_frames
            for position, box, seen in zip(positions, sample.boxes, sample.visible, strict=True):
                boxes[position] = box if seen else None
            given = sum(b is not None for b in boxes) > 1 and not self.use_tracker
            track = Track.from_boxes(boxes, key_frame=key) if given else None
            description = self.pipeline.describe(
                video, sample.key_box, key, track=track, max_new_tokens=self.max_new_tokens
            )
        return {"prediction": description.text, "references": [sample.caption or sample.answer], "given_track": given}


@dataclass(frozen=True)
class RegResult:
    """What :func:`run_reg` scored.

    Attributes:
        scores: the corpus scores (``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``, ...), as in ``metrics.json``.
        notes: the report's notes.
        num_samples: records scored.
        skipped: metric name -> why it was not computed.
    """

    scores: dict[str, float]
    notes: list[str]
    num_samples: int
    skipped: dict[str, str]


def run_reg(
    pipeline: VideoPipeline,
    samples: Sequence[RefSample],
    out: Path,
    *,
    model_dir: Path,
    data_format: str,
    data_path: Path,
    use_tracker: bool = False,
    max_new_tokens: int = 64,
    spice_jar_dir: Path | None = None,
    bertscore_model: Path | None = None,
    shard: Shard | None = None,
) -> RegResult | None:
    """Describe every record (resumably, in ``out``), score the captions and write the report.

    Args:
        pipeline: the model.
        samples: records with boxes and a caption (:func:`caption_samples`).
        out: output directory (``predictions.jsonl``, ``run.json``, ``metrics.json``, ``report.md``).
        model_dir: the model's directory, recorded in ``run.json`` and the report.
        data_format / data_path: where the records come from, likewise.
        use_tracker: run the tracker even where the records give boxes.
        max_new_tokens: generation length.
        spice_jar_dir / bertscore_model: optional SPICE jars and BERTScore model (see ``score_captions``).
        shard: this process of a sharded run (see :mod:`artemis.eval.runner`); rank 0 merges and scores,
            the other ranks return None.
    """
    settings = {
        "task": "reg",
        "model": str(model_dir.resolve()),
        "data": f"{data_format}:{data_path.resolve()}",
        "track": use_tracker,
        "max_new_tokens": max_new_tokens,
    }
    predictor = RegPredictor(pipeline, use_tracker=use_tracker, max_new_tokens=max_new_tokens)
    run = run_predictions(
        samples, predictor, out, sample_id=lambda s: s.sample_id, settings=settings, description="reg", shard=shard
    )
    if not run.complete:
        return None
    predictions = {r["id"]: r["prediction"] for r in run.records}
    references = {r["id"]: r["references"] for r in run.records}
    scores = score_captions(predictions, references, spice_jar_dir=spice_jar_dir, bertscore_model=bertscore_model)
    notes = [
        f"{len(predictions)} records of {data_format}:{data_path}; model {model_dir}; question "
        "'What is the <region> doing in this video?' from the record's key-frame box.",
        "Track: the record's boxes where it has more than the key frame's, else the model's tracker.",
        "pycocoevalcap with its PTBTokenizer; no length filtering.",
        *(f"{name} skipped: {reason}" for name, reason in scores.skipped.items()),
    ]
    finish_run(
        out,
        "Video-REG evaluation",
        scores.corpus,
        notes,
        extra={"num_samples": len(predictions), "skipped": scores.skipped},
    )
    return RegResult(dict(scores.corpus), notes, len(predictions), dict(scores.skipped))
