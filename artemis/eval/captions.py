"""Caption metrics for Video-REG: pycocoevalcap BLEU-1..4, METEOR, ROUGE_L, CIDEr, optional SPICE and BERTScore.

Everything goes through pycocoevalcap's PTBTokenizer (Java) first, as COCO-style evaluation does, and
every prediction is scored: the original Artemis dropped predictions outside 5..300 characters, which
inflates its scores, so this module does not filter.

SPICE needs the Stanford CoreNLP 3.6.0 jars, which pycocoevalcap downloads on first use. Offline that
fails, so this module never lets it try: it runs SPICE itself with an explicit class path that points
at a local directory holding the two jars, and skips SPICE with a logged message when they are absent.
BERTScore runs only with a model in a local directory and the optional ``bert_score`` package.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artemis.errors import AnnotationError, ArtemisError

logger = logging.getLogger(__name__)

__all__ = [
    "CORENLP_JARS",
    "METRICS",
    "CaptionMetricError",
    "CaptionScores",
    "find_spice_jars",
    "score_captions",
]

METRICS = ("bleu", "meteor", "rouge", "cider", "spice", "bertscore")
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


class CaptionMetricError(ArtemisError, RuntimeError):
    """A caption metric could not run (Java missing, a scorer process failed)."""


@dataclass(frozen=True)
class CaptionScores:
    """Corpus and per-sample caption scores.

    Attributes:
        corpus: ``{"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}`` plus ``"SPICE"`` and
            ``"BERTScore_F1"`` when they ran. BLEU is corpus-level (pycocoevalcap), the others are means.
        per_sample: ``{id: {metric: value}}`` with the same metric names.
        skipped: ``{metric: reason}`` for optional metrics that were requested but could not run.
    """

    corpus: dict[str, float]
    per_sample: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"corpus": dict(self.corpus), "per_sample": dict(self.per_sample), "skipped": dict(self.skipped)}


# --- inputs -----------------------------------------------------------------------------------------


def _id_list(ids: Iterable[str], limit: int = 5) -> str:
    ids = sorted(ids)
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _check_inputs(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str] | str]
) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    missing_refs = set(predictions) - set(references)
    missing_preds = set(references) - set(predictions)
    if missing_refs or missing_preds:
        parts = []
        if missing_refs:
            parts.append(f"no references for prediction ids {_id_list(missing_refs)}")
        if missing_preds:
            parts.append(f"no prediction for reference ids {_id_list(missing_preds)}")
        raise AnnotationError("; ".join(parts) + "; predictions and references must have the same ids")
    if not predictions:
        raise AnnotationError("no predictions to score")
    ids = [str(i) for i in predictions]
    preds: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for key in predictions:
        prediction = predictions[key]
        if not isinstance(prediction, str):
            raise AnnotationError(f"prediction of id {key!r} is {type(prediction).__name__}; expected a string")
        given = references[key]
        ref_list = [given] if isinstance(given, str) else list(given)
        if not ref_list or not all(isinstance(r, str) for r in ref_list):
            raise AnnotationError(f"references of id {key!r} must be one or more strings, got {given!r}")
        preds[str(key)] = prediction
        refs[str(key)] = ref_list
    return ids, preds, refs


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise CaptionMetricError(
            "Java was not found on PATH: pycocoevalcap's PTBTokenizer, METEOR and SPICE run Java; install a "
            "Java runtime (e.g. `apt-get install default-jre-headless`, Java 8 or newer) and retry"
        )
    return java


def _tokenize(ids: list[str], preds: dict[str, str], refs: dict[str, list[str]]) -> tuple[dict, dict]:
    """pycocoevalcap's PTBTokenizer, run once for references and predictions together.

    Same jar, command line (``-preserveLines -lowerCase``), newline handling and punctuation list as
    ``pycocoevalcap.tokenizer.ptbtokenizer``; run here so that Java's exit status is checked, its
    progress line stays off the user's stderr and no temporary file lands in site-packages.
    """
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    owners = [(i, "ref") for i in ids for _ in refs[i]] + [(i, "pred") for i in ids]
    lines = [r for i in ids for r in refs[i]] + [preds[i] for i in ids]
    jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory(prefix="artemis-ptb-") as tmp:
        text_file = Path(tmp) / "captions.txt"
        text_file.write_bytes("\n".join(line.replace("\n", " ") for line in lines).encode())
        command = [_require_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer"]
        done = subprocess.run(
            [*command, "-preserveLines", "-lowerCase", str(text_file)], capture_output=True, check=False
        )
    output = done.stdout.decode().split("\n")
    if done.returncode != 0 or len(output) < len(lines):
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CaptionMetricError(f"PTBTokenizer (Java) failed with exit code {done.returncode}: {message[0]}")
    gts: dict[str, list[str]] = {i: [] for i in ids}
    res: dict[str, list[str]] = {}
    for (key, kind), line in zip(owners, output, strict=False):
        tokens = " ".join(w for w in line.rstrip().split(" ") if w not in ptb.PUNCTUATIONS)
        if kind == "ref":
            gts[key].append(tokens)
        else:
            res[key] = [tokens]
    return gts, res


# --- optional metrics -------------------------------------------------------------------------------


def find_spice_jars(spice_jar_dir: str | Path | None) -> tuple[Path, ...] | None:
    """Paths of the Stanford CoreNLP 3.6.0 jars in ``spice_jar_dir``, or ``None`` with the reason logged."""
    if spice_jar_dir is None:
        logger.warning("SPICE skipped: no spice_jar_dir given (it needs %s)", " and ".join(CORENLP_JARS))
        return None
    folder = Path(spice_jar_dir)
    jars = tuple(folder / name for name in CORENLP_JARS)
    missing = [p.name for p in jars if not p.is_file()]
    if missing:
        logger.warning(
            "SPICE skipped: %s not found in %s (SPICE needs Stanford CoreNLP 3.6.0; nothing is downloaded)",
            " and ".join(missing),
            folder,
        )
        return None
    return jars


def _spice(ids: list[str], gts: dict, res: dict, jars: tuple[Path, ...]) -> tuple[float, list[float]]:
    import pycocoevalcap.spice as spice_package

    spice_dir = Path(spice_package.__file__).parent
    # The jar's manifest expects CoreNLP under its own lib/ (where pycocoevalcap downloads it); an
    # explicit class path uses the user's copy instead, so nothing is written into site-packages.
    classpath = os.pathsep.join([str(spice_dir / "spice-1.0.jar"), str(spice_dir / "lib" / "*"), *map(str, jars)])
    with tempfile.TemporaryDirectory(prefix="artemis-spice-") as tmp:
        in_file, out_file = Path(tmp) / "input.json", Path(tmp) / "output.json"
        records = [{"image_id": i, "test": res[i][0], "refs": gts[i]} for i in ids]
        in_file.write_text(json.dumps(records), encoding="utf-8")
        command = [_require_java(), "-Xmx8G", "-cp", classpath, "edu.anu.spice.SpiceScorer", str(in_file)]
        command += ["-out", str(out_file), "-subset", "-silent"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out_file.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CaptionMetricError(f"SPICE failed (exit {done.returncode}): {tail[0]}")
        results = {str(item["image_id"]): item for item in json.loads(out_file.read_text(encoding="utf-8"))}

    def f_score(i: str) -> float:
        value = results[i]["scores"]["All"]["f"]
        return float(value) if value is not None else float("nan")

    per_sample = [f_score(i) for i in ids]
    return sum(per_sample) / len(per_sample), per_sample


def _bertscore(ids: list[str], preds: dict[str, str], refs: dict[str, list[str]], model_dir: Path) -> list[float]:
    import bert_score
    from bert_score.utils import model2layers

    # bert_score looks the layer up by model name; a local directory named like a known model uses the
    # published layer, any other model its last layer.
    num_layers = model2layers.get(model_dir.name)
    if num_layers is None:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        num_layers = int(config.get("num_hidden_layers") or config.get("n_layer"))
    _, _, f1 = bert_score.score(
        [preds[i] for i in ids],
        [refs[i] for i in ids],
        model_type=str(model_dir),
        num_layers=num_layers,
        device="cpu",
        verbose=False,
    )
    return [float(v) for v in f1]


# --- public API -------------------------------------------------------------------------------------


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str] | str],
    *,
    metrics: Sequence[str] = ("bleu", "meteor", "rouge", "cider"),
    spice_jar_dir: str | Path | None = None,
    bertscore_model: str | Path | None = None,
) -> CaptionScores:
    """Score generated captions against references with pycocoevalcap.

    Args:
        predictions: ``{id: caption}``.
        references: ``{id: [reference, ...]}`` (a single string is one reference); same ids.
        metrics: any of ``"bleu"``, ``"meteor"``, ``"rouge"``, ``"cider"``, ``"spice"``, ``"bertscore"``.
            SPICE is also added when ``spice_jar_dir`` is given, BERTScore when ``bertscore_model`` is.
        spice_jar_dir: a directory holding ``stanford-corenlp-3.6.0.jar`` and
            ``stanford-corenlp-3.6.0-models.jar``; SPICE is skipped (logged) without them.
        bertscore_model: a local model directory for BERTScore (needs the ``bert_score`` package).

    Returns:
        :class:`CaptionScores`.

    Raises:
        AnnotationError: ids differ between predictions and references (naming them), or bad values.
        CaptionMetricError: Java is missing or a scorer process failed.
    """
    requested = [m.lower() for m in metrics]
    unknown = sorted(set(requested) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown caption metrics {unknown}; expected some of {', '.join(METRICS)}")
    if spice_jar_dir is not None and "spice" not in requested:
        requested.append("spice")
    if bertscore_model is not None and "bertscore" not in requested:
        requested.append("bertscore")
    ids, preds, refs = _check_inputs(predictions, references)
    _require_java()
    gts, res = _tokenize(ids, preds, refs)

    corpus: dict[str, float] = {}
    per_sample: dict[str, dict[str, float]] = {i: {} for i in ids}
    skipped: dict[str, str] = {}

    def record(name: str, total: float, values: Sequence[float]) -> None:
        corpus[name] = float(total)
        for i, value in zip(ids, values, strict=True):
            per_sample[i][name] = float(value)

    if "bleu" in requested:
        from pycocoevalcap.bleu.bleu import Bleu

        with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its n-gram statistics
            totals, values = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            record(f"Bleu_{n + 1}", totals[n], values[n])
    if "meteor" in requested:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            total, values = scorer.compute_score(gts, res)
        except ValueError as error:  # an empty line from a crashed Java process
            raise CaptionMetricError(f"METEOR (Java) failed: {error}") from None
        finally:
            del scorer  # its __del__ stops the Java process
        record("METEOR", total, values)
    if "rouge" in requested:
        from pycocoevalcap.rouge.rouge import Rouge

        total, values = Rouge().compute_score(gts, res)
        record("ROUGE_L", total, values)
    if "cider" in requested:
        from pycocoevalcap.cider.cider import Cider

        total, values = Cider().compute_score(gts, res)
        record("CIDEr", total, values)
    if "spice" in requested:
        jars = find_spice_jars(spice_jar_dir)
        if jars is None:
            skipped["SPICE"] = f"Stanford CoreNLP 3.6.0 jars not found in {spice_jar_dir}"
        else:
            total, values = _spice(ids, gts, res, jars)
            record("SPICE", total, values)
    if "bertscore" in requested:
        reason = _bertscore_unavailable(bertscore_model)
        if reason:
            logger.warning("BERTScore skipped: %s", reason)
            skipped["BERTScore_F1"] = reason
        else:
            values = _bertscore(ids, preds, refs, Path(bertscore_model))  # type: ignore[arg-type]
            record("BERTScore_F1", sum(values) / len(values), values)
    return CaptionScores(corpus=corpus, per_sample=per_sample, skipped=skipped)


def _bertscore_unavailable(model: str | Path | None) -> str | None:
    if model is None:
        return "no bertscore_model directory given"
    if not Path(model).is_dir():
        return f"{model} is not a local model directory (nothing is downloaded)"
    try:
        import bert_score  # noqa: F401
    except ImportError:
        return "the optional package bert_score is not installed (pip install bert-score)"
    return None
