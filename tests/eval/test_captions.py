"""Caption metrics: nlg-eval's expected values through pycocoevalcap, ids, Java, SPICE and BERTScore."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from artemis.errors import AnnotationError
from artemis.eval.captions import CaptionMetricError, CaptionScores, find_spice_jars, score_captions

pytestmark = pytest.mark.slow  # each scoring runs Java (PTBTokenizer, METEOR)

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


@pytest.fixture(scope="module")
def examples(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "captions" / "nlg_eval_examples.json").read_text())


@pytest.fixture(scope="module")
def corpus_scores(examples: dict) -> CaptionScores:
    corpus = examples["corpus"]
    predictions = {f"v{i}": hyp for i, hyp in enumerate(corpus["hyp"])}
    references = {f"v{i}": refs for i, refs in enumerate(corpus["refs"])}
    return score_captions(predictions, references)


@pytest.mark.reference
def test_corpus_reproduces_nlg_eval(examples: dict, corpus_scores: CaptionScores) -> None:
    expected = examples["corpus"]["expected"]
    assert set(corpus_scores.corpus) == set(METRICS)
    for name in METRICS:
        assert corpus_scores.corpus[name] == pytest.approx(expected[name], abs=1e-6), name


@pytest.mark.reference
def test_per_sample_scores(corpus_scores: CaptionScores) -> None:
    assert list(corpus_scores.per_sample) == ["v0", "v1"]
    assert all(set(s) == set(METRICS) for s in corpus_scores.per_sample.values())
    # ROUGE_L and CIDEr are means of the per-sample values; BLEU and METEOR pool statistics over the corpus.
    for name in ("ROUGE_L", "CIDEr"):
        mean = sum(s[name] for s in corpus_scores.per_sample.values()) / 2
        assert mean == pytest.approx(corpus_scores.corpus[name], abs=1e-9), name


@pytest.mark.reference
def test_single_sample_reproduces_nlg_eval(examples: dict) -> None:
    single = examples["single"]
    scores = score_captions({"only": single["hyp"]}, {"only": single["refs"]})
    for name in METRICS:
        assert scores.corpus[name] == pytest.approx(single["expected"][name], abs=1e-6), name


def test_no_length_filtering_and_single_string_reference() -> None:
    # The original Artemis drops predictions under 5 characters; here "cat" is scored like any other.
    scores = score_captions({"a": "cat", "b": "a dog runs"}, {"a": "a cat", "b": ["a dog runs"]}, metrics=("bleu",))
    assert set(scores.per_sample) == {"a", "b"}
    assert scores.per_sample["b"]["Bleu_1"] == pytest.approx(1.0, abs=1e-6)


def test_mismatched_ids_are_named() -> None:
    with pytest.raises(AnnotationError, match=r"'x'.*'y'"):
        score_captions({"a": "one", "x": "two"}, {"a": ["one"], "y": ["three"]})


def test_bad_values() -> None:
    with pytest.raises(AnnotationError, match="references"):
        score_captions({"a": "one"}, {"a": []})
    with pytest.raises(ValueError, match="unknown caption metrics"):
        score_captions({"a": "one"}, {"a": ["one"]}, metrics=("bleu", "wer"))


def test_java_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CaptionMetricError, match="Java was not found"):
        score_captions({"a": "one"}, {"a": ["one"]})


def test_spice_skipped_without_jars_and_never_downloads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import pycocoevalcap.spice.get_stanford_models as downloader

    def refuse() -> None:
        raise AssertionError("SPICE tried to download CoreNLP")

    monkeypatch.setattr(downloader, "get_stanford_models", refuse)
    with caplog.at_level(logging.WARNING):
        scores = score_captions({"a": "a cat"}, {"a": ["a cat"]}, metrics=("bleu",), spice_jar_dir=tmp_path)
    assert "SPICE" not in scores.corpus
    assert "SPICE" in scores.skipped
    assert "stanford-corenlp-3.6.0.jar" in caplog.text
    assert find_spice_jars(None) is None


def test_spice_with_unusable_jars_fails_clearly(tmp_path: Path) -> None:
    for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"):
        (tmp_path / name).write_bytes(b"not a jar")
    assert find_spice_jars(tmp_path) is not None
    with pytest.raises(CaptionMetricError, match="SPICE failed"):
        score_captions({"a": "a cat"}, {"a": ["a cat"]}, metrics=("bleu",), spice_jar_dir=tmp_path)


def test_bertscore_skipped_without_local_model(tmp_path: Path) -> None:
    scores = score_captions({"a": "a cat"}, {"a": ["a cat"]}, metrics=("bleu",), bertscore_model=tmp_path / "none")
    assert "BERTScore_F1" in scores.skipped and "BERTScore_F1" not in scores.corpus


def test_bertscore_with_tiny_local_model(tmp_path: Path) -> None:
    pytest.importorskip("bert_score")
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["a", "the", "red", "circle", "moves", "left", "right", "blue", "square"]
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt"), model_max_length=32).save_pretrained(tmp_path)
    config = BertConfig(
        vocab_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path)
    scores = score_captions(
        {"a": "the red circle moves left", "b": "a blue square"},
        {"a": ["a blue square"], "b": ["a blue square", "the red circle"]},
        metrics=("bleu",),
        bertscore_model=tmp_path,
    )
    assert scores.per_sample["b"]["BERTScore_F1"] == pytest.approx(1.0, abs=1e-5)  # identical to a reference
    assert scores.per_sample["a"]["BERTScore_F1"] < 1.0
