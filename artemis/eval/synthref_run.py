"""A SynthRef attribute evaluation run: describe every object (and its controls), score, write the report.

The predictor and the scoring are :mod:`artemis.eval.synthref`; :func:`run_synthref` runs them over a split
with the resumable runner (:func:`artemis.eval.runner.run_predictions`) and writes ``metrics.json`` and
``report.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from artemis.eval.runner import Shard, finish_run, run_predictions
from artemis.eval.synthref import (
    SynthRefPredictor,
    SynthRefTarget,
    Vocabulary,
    chance_joint_accuracy,
    synthref_metrics,
)
from artemis.tasks.pipeline import VideoPipeline

__all__ = ["SYNTHREF_KEYS", "run_synthref"]

SYNTHREF_KEYS = (
    "joint_accuracy",
    "color_accuracy",
    "shape_accuracy",
    "motion_accuracy",
    "swap_joint_accuracy",
    "blind_joint_accuracy",
    "num_samples",
    "num_swap",
    "num_blind",
    "num_unparsed",
    "num_errors",
    "overlap_joint_accuracy",
    "overlap_color_accuracy",
    "num_overlap",
    "rest_joint_accuracy",
    "num_rest",
)
"""The metrics printed for a SynthRef run (``metrics.json`` also has ``chance_joint_accuracy``); the
``overlap``/``rest`` ones only for a split whose manifest has ``key_frame_overlap``."""


def run_synthref(
    pipeline: VideoPipeline,
    targets: Sequence[SynthRefTarget],
    vocabulary: Vocabulary,
    out: Path,
    *,
    model_dir: Path,
    data: Path,
    seed: int = 0,
    use_tracker: bool = False,
    controls: bool = True,
    prompt: str = "box",
    prompt_frame: str = "key",
    max_new_tokens: int = 64,
    shard: Shard | None = None,
) -> dict[str, Any] | None:
    """Describe every target (resumably, in ``out``), score the attributes and write the report.

    Args:
        pipeline: the model (with the token selector it should run).
        targets / vocabulary: the split's objects and attribute words (:func:`artemis.eval.synthref.load_targets`).
        out: output directory (``predictions.jsonl``, ``run.json``, ``metrics.json``, ``report.md``).
        model_dir / data: the model's directory and the split folder, recorded in ``run.json`` and the report.
        seed: seed of the controls' box choices.
        use_tracker: run the pipeline's tracker from the key-frame box instead of the exact boxes.
        controls: also run the box-swap and box-blind controls.
        prompt: ``"box"`` or ``"mask"`` (each target by its visible pixels; the controls stay boxes).
        prompt_frame: ``"key"`` or ``"overlap"`` (the frame where the target's box covers the most of
            another object; see :class:`~artemis.eval.synthref.SynthRefPredictor`).
        max_new_tokens: generation length.
        shard: this process of a sharded run (see :mod:`artemis.eval.runner`); rank 0 merges and scores.

    Returns:
        The metrics (as in ``metrics.json``); None on ranks other than 0 of a sharded run.
    """
    predictor = SynthRefPredictor(
        pipeline,
        seed=seed,
        use_tracker=use_tracker,
        controls=controls,
        prompt=prompt,
        prompt_frame=prompt_frame,
        generation={"max_new_tokens": max_new_tokens},
    )
    settings = {
        "task": "synthref",
        "model": str(model_dir.resolve()),
        "data": str(Path(data).resolve()),
        "seed": seed,
        "track": use_tracker,
        "controls": controls,
        "prompt": prompt,
        "prompt_frame": prompt_frame,
        "max_new_tokens": max_new_tokens,
        "selector": pipeline.config.selector,
    }
    run = run_predictions(
        targets, predictor, out, sample_id=lambda t: t.sample_id, settings=settings, description="synthref", shard=shard
    )
    if not run.complete:
        return None
    metrics = synthref_metrics(run.records, vocabulary)
    chance = chance_joint_accuracy(vocabulary)
    notes = [
        f"{metrics['num_samples']} objects of {data}; model {model_dir}.",
        "Boxes: "
        + (
            f"the model's tracker ({pipeline.tracker}) from the exact key-frame box."
            if use_tracker
            else "the exact key-frame box, with the exact per-frame boxes as the track (the tracker is not measured)."
        )
        + (" The target is given by its visible pixels (mask prompt)." if prompt == "mask" else "")
        + (
            " Each target is given on the frame where its box covers the most of another object."
            if prompt_frame == "overlap"
            else ""
        ),
        "A description is parsed into colour/shape/motion (artemis.eval.synthref); an attribute that cannot be "
        "read unambiguously counts as wrong. Joint = all three right.",
        "box-swap: another object's box on the same video; scored against that object's labels.",
        f"box-blind: a random box of the target's size overlapping no object (IoU <= 0.1), held still; scored "
        f"against the target's labels. Chance joint accuracy is {chance:.4f}.",
    ]
    finish_run(out, "SynthRef attribute evaluation", metrics, notes, extra={"chance_joint_accuracy": chance})
    return metrics
