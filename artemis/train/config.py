"""Training configs: one YAML file per stage, validated before any compute is spent.

A config has six sections (see ``configs/`` and ``TRAIN_AND_VALIDATE.md``)::

    stage: referring                 # a name, written into the stage output
    model:   where the weights start (a previous stage, a tiny random model, or CLIP + LLM directories)
    train:   which parts train (projector, llm: full | lora | frozen, region_encoder, vision_tower)
    lora:    peft LoRA settings (used when train.llm is lora)
    quantization: bitsandbytes 4/8-bit loading of the LLM (QLoRA)
    data:    annotation files with formats and weights, and the dataset options
    training: keyword arguments of transformers.TrainingArguments (output_dir, learning_rate, ...)

jsonargparse builds the schema from the dataclasses below, reads the YAML and applies ``--section.key
value`` overrides (values read as YAML). Every key is checked: an unknown one is a :class:`ConfigError`
naming it and the closest valid key; every value is checked against its field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonargparse
import yaml

from artemis.errors import ConfigError, is_int, is_real

__all__ = [
    "DataFile",
    "DataSection",
    "LoraSection",
    "ModelSection",
    "QuantizationSection",
    "TrainConfig",
    "TrainableSection",
    "apply_overrides",
    "load_config",
]

LLM_MODES = ("full", "lora", "frozen")
# The model's parts as named in ``train:`` and the module attribute each one is.
TRAINABLE_PARTS = {"projector": "mm_projector", "region_encoder": "region_encoder", "vision_tower": "vision_tower"}
# Every top-level part of an artemis model (the attributes above and the LLM).
MODEL_PARTS = (*TRAINABLE_PARTS.values(), "language_model")
OBJECTIVES = ("lm", "region_words")  # train.objective; region_words: artemis.train.region_words


@dataclass
class ModelSection:
    """Where the weights come from: exactly one of ``base``, ``tiny`` or ``vision_tower`` + ``language_model``.

    Attributes:
        base: an artemis model directory or a previous stage's output directory (any kind it saved).
        tiny: build a tiny random model: ``{seed, vocab_from: [annotation files], <ArtemisConfig fields>}``.
        vision_tower: a local CLIP vision model directory (real-scale stage 1).
        language_model: a local causal LM directory with its tokenizer (Vicuna-7B v1.5 in the paper).
        config: ArtemisConfig fields for a model composed from ``vision_tower`` + ``language_model``.
    """

    base: str | None = None
    tiny: dict[str, Any] | None = None
    vision_tower: str | None = None
    language_model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainableSection:
    """Which parts of the model train; everything else is frozen.

    ``freeze`` names parameters to keep frozen inside the parts that train, by name prefix (e.g.
    ``region_encoder.flatten_linear``). ``objective`` is ``lm`` (the language-model loss of every published
    stage) or ``region_words`` (the region encoder predicts the answer's words from its tokens, a
    bag-of-words pretraining of the region path; :mod:`artemis.train.region_words`). ``region_words_bins``
    gives each of that many position parts of the answer its own bag, so word order counts (1: one bag).
    ``frozen_batch_norms``: ``eval`` (the default) runs each BatchNorm of a frozen part as at inference (its
    running statistics, kept); ``train`` lets it normalise by each batch and move its statistics, as the
    trainer did before 2026-11-30 (the tiny recipe's referring part keeps it, the bundled model was trained
    so).
    ``box_label_sigma`` (box output, ours; 0, the default, is off): with the ``lm`` objective, the loss of
    each box number in an answer is taken against a Gaussian of that width (in the 0..100 box units) over
    the number tokens instead of the number alone, so a near miss costs less than a far one
    (:mod:`artemis.model.number_loss`). It needs a tokenizer that writes each of 0..100 as one token.
    """

    projector: bool = True
    llm: str = "frozen"
    region_encoder: bool = False
    vision_tower: bool = False
    freeze: list[str] = field(default_factory=list, metadata={"expected": "a list of parameter-name prefixes"})
    objective: str = "lm"
    region_words_bins: int = 1
    frozen_batch_norms: str = "eval"
    box_label_sigma: float = 0.0


@dataclass
class LoraSection:
    """peft LoRA on the LLM: ``target_modules: all-linear`` means every linear layer of the LLM but its head.

    ``modules_to_save`` names LLM modules trained in full next to the adapter, e.g. ``[embed_tokens, lm_head]``
    when the stage's answers use words the earlier stages never trained (peft's usual way to add tokens).
    """

    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class QuantizationSection:
    """bitsandbytes quantisation of the LLM's linear layers at load time (4-bit NF4 for QLoRA)."""

    bits: int | None = None
    quant_type: str = "nf4"
    double_quant: bool = True


DATA_TASKS = ("describe", "sot", "rsot")  # data.files[].task; sot / rsot: artemis.data.box_output_dataset


@dataclass
class DataFile:
    """One annotation file of the mix: its ``format``, ``path``, ``weight`` and ``task``.

    ``task`` is ``describe`` (referring descriptions and conversations; the default) or ``sot`` / ``rsot``
    (box output: clips whose answer is the target's box on every frame; the model's ``tasks`` must
    include ``boxes``). A tracking file may appear twice, once per box task.
    """

    format: str
    path: str
    weight: float = 1.0
    task: str | None = None


@dataclass
class DataSection:
    """The training mix and the options of :class:`artemis.data.dataset.ReferringDataset`.

    Attributes:
        files: ``[{format, path, weight, task}]``; a weight of 2 draws each record (box output: each clip)
            twice per epoch; ``task`` is describe (default), sot or rsot (see :class:`DataFile`).
        eval_files: the same for an evaluation set (optional).
        max_length: longest token sequence; longer samples are cut after their placeholders.
        media_counts_as_one: count a sample's video or image as one token against ``max_length`` (the
            original Artemis / LLaVA: its collator cut the ids, where ``<image>``/``<video>`` is one id, to
            2048 before the model expanded them), so the text keeps the same budget whatever the media's
            size; false (the default) counts every token the LLM sees.
        tracker: tracker for records whose track is not annotated (``null`` requires annotated tracks).
        max_region_candidates / cache_dir / bad_records: passed to the dataset.
        key_frame_jitter: probability that a referring item's box is given on another frame where the
            target is visible instead of the record's key frame (0 to 1; 0 keeps the key frame).
        mask_prompts: probability that a referring item whose record has a ``key_frame_mask`` gives the
            target as that mask instead of its box (0 to 1; 0, the default, always the box). The mask reaches
            the region encoder of a model with ``region_key_mask``; only on the record's own key frame.
        sot_box_jitter: largest move of each edge of the box an SOT prompt gives, as a fraction of the
            box's size (0 to 0.5; 0, the default, gives the exact first-frame box).
        sot_box_shift: largest move of that whole box, its size kept, as a fraction of its width / height
            (0 to 1; 0, the default, no move).
        box_history_noise: largest move of each answer box as the LLM reads it back under teacher forcing, in
            units of the 0..100 box grid (0 to 20; 0, the default, exact); the labels stay exact
            (:class:`~artemis.data.box_output_dataset.BoxOutDataset`).
        sot_query_exact: the frame selector's query reads the exact first-frame box of an SOT clip while its
            prompt gives the jittered one (false, the default: both the jittered box).
        video_cache_mb: size of the store of whole decoded small videos that the box-output files share (one
            per process, for the training and evaluation files; 0 turns it off). Every record is cut into
            several clips and drawn again each epoch, so a store that holds the whole training set decodes
            each video once (SynthRef's 1,200 videos of 24 frames at 128 px: about 1.4 GB).
        seed: seed of the dataset's random draws (jitter, paraphrases, mixing).
        log_samples: write ``samples-rank<r>.jsonl`` with the ids each rank trained on, and each rank's
            weight digest at the end (to check sharding).
        group_by_modality_length: batches hold only samples with media or only text-only ones, of similar
            length (LLaVA's and Artemis' ``--group_by_modality_length``, stages 2 and 3).
    """

    files: list[DataFile] = field(default_factory=list)
    eval_files: list[DataFile] = field(default_factory=list)
    max_length: int | None = 2048
    media_counts_as_one: bool = False
    tracker: str | None = None
    max_region_candidates: int | None = None
    key_frame_jitter: float = 0.0
    mask_prompts: float = 0.0
    sot_box_jitter: float = 0.0
    sot_box_shift: float = 0.0
    box_history_noise: int = 0
    sot_query_exact: bool = False
    video_cache_mb: float = 512.0
    cache_dir: str | None = None
    bad_records: str = "raise"
    seed: int = 0
    log_samples: bool = False
    group_by_modality_length: bool = False


@dataclass
class TrainConfig:
    stage: str
    model: ModelSection
    train: TrainableSection = field(default_factory=TrainableSection)
    lora: LoraSection = field(default_factory=LoraSection)
    quantization: QuantizationSection = field(default_factory=QuantizationSection)
    data: DataSection = field(default_factory=DataSection)
    training: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the YAML file it came from (for messages)

    @property
    def output_dir(self) -> Path:
        return Path(self.training["output_dir"])

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


# The dataclass sections; one left empty in the YAML (``quantization:``) takes its defaults.
_SECTIONS = ("model", "train", "lora", "quantization", "data")
# The keys of a config file: every field of TrainConfig but ``source``.
_TOP_KEYS = ("stage", "model", *_SECTIONS[1:], "training")


def _closest(name: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(sorted(valid))}"


def _unknown(where: str, name: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"unknown config key '{where}{name}'{_closest(name, valid)}")


def _schema_field(dotted: str) -> dataclasses.Field | ConfigError | None:
    """The dataclass field ``dotted`` names (``train.freeze``, ``data.files.path``).

    Returns an error naming the first part the schema lacks (``train.projecter``), or ``None`` for a key
    inside a free-form mapping (``model.tiny.seed``, ``training.*``).
    """
    cls: type = TrainConfig
    names = list(_TOP_KEYS)
    where = ""
    found: dataclasses.Field | None = None
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if part not in names:
            return _unknown(where, part, names)
        found = next(f for f in dataclasses.fields(cls) if f.name == part)
        hint = typing.get_type_hints(cls)[part]
        inner = [t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t)]
        if not inner:  # a value or a free-form mapping: nothing below it is ours to check
            return found if depth == len(parts) - 1 else None
        cls = inner[0]
        names = [f.name for f in dataclasses.fields(cls)]
        where += f"{part}[]." if typing.get_origin(hint) is list else f"{part}."
    return found


def _training_fields() -> list[str]:
    from transformers import TrainingArguments

    return [f.name for f in dataclasses.fields(TrainingArguments) if f.init]


def _check_training(training: dict[str, Any]) -> None:
    """``training`` holds TrainingArguments keywords, a mapping no dataclass of ours describes."""
    valid = _training_fields()
    for name in training:
        if name not in valid:
            raise _unknown("training.", name, valid)
    if "output_dir" not in training:
        raise ConfigError("training.output_dir is required: the directory the stage writes its output to")


def validate(config: TrainConfig) -> None:
    """Checks that need no files: consistent choices and values in range."""
    model, train = config.model, config.train
    sources = [model.base is not None, model.tiny is not None, model.vision_tower is not None]
    if sum(sources) != 1:
        raise ConfigError(
            "set exactly one of model.base (an artemis model or stage output), model.tiny (a random tiny "
            "model) or model.vision_tower + model.language_model (compose from CLIP and an LLM)"
        )
    if (model.vision_tower is None) != (model.language_model is None):
        raise ConfigError("model.vision_tower and model.language_model go together: set both or neither")
    if train.llm not in LLM_MODES:
        raise ConfigError(f"train.llm={train.llm!r}; expected one of {', '.join(LLM_MODES)}")
    if train.objective not in OBJECTIVES:
        raise ConfigError(f"train.objective={train.objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if train.objective == "region_words":
        if not train.region_encoder:
            raise ConfigError("train.objective: region_words trains the region encoder; set train.region_encoder: true")
        if train.llm != "frozen" or train.projector:
            raise ConfigError(
                "train.objective: region_words uses neither the LLM nor the projector; set train.llm: frozen and "
                "train.projector: false"
            )
    sigma = train.box_label_sigma
    if not is_real(sigma, minimum=0):
        raise ConfigError(
            f"train.box_label_sigma={sigma!r}: expected a number >= 0, the width in box units of the targets on "
            "box numbers (0: off; e.g. 1.5)"
        )
    if sigma and train.objective != "lm":
        raise ConfigError(
            f"train.box_label_sigma={sigma} shapes the language-model loss; set train.objective: lm or remove it"
        )
    bins = train.region_words_bins
    if not is_int(bins, minimum=1):
        raise ConfigError(
            f"train.region_words_bins={bins!r}: expected a whole number >= 1 (1 is one bag of words per answer)"
        )
    if bins > 1 and train.objective != "region_words":
        raise ConfigError(
            f"train.region_words_bins={bins} applies to train.objective: region_words only; remove it or set "
            "the objective"
        )
    if not isinstance(train.freeze, list) or not all(isinstance(p, str) and p for p in train.freeze):
        raise ConfigError(f"train.freeze={train.freeze!r}; expected a list of parameter-name prefixes")
    if train.frozen_batch_norms not in ("eval", "train"):
        raise ConfigError(
            f"train.frozen_batch_norms={train.frozen_batch_norms!r}; expected 'eval' (a frozen part's BatchNorm "
            "works as at inference) or 'train' (it follows each batch)"
        )
    if config.quantization.bits not in (None, 4, 8):
        raise ConfigError(f"quantization.bits={config.quantization.bits!r}; expected null, 4 or 8")
    if config.quantization.bits is not None and train.llm == "full":
        raise ConfigError("a quantised LLM cannot be trained in full; use train.llm: lora (QLoRA) or frozen")
    if config.lora.r < 1 or not 0 <= config.lora.dropout < 1:
        raise ConfigError(f"lora.r={config.lora.r} must be >= 1 and lora.dropout={config.lora.dropout} in [0, 1)")
    if not any([train.projector, train.llm != "frozen", train.region_encoder, train.vision_tower]):
        raise ConfigError("nothing trains: enable at least one of train.projector, llm, region_encoder, vision_tower")
    if not config.data.files:
        raise ConfigError("data.files is empty: list the annotation files to train on")
    for name, meaning in (
        ("key_frame_jitter", "(always the record's key frame) to 1 (always another visible frame)"),
        ("mask_prompts", "(always the box) to 1 (the key-frame mask whenever the record has one)"),
    ):
        value = getattr(config.data, name)
        if not is_real(value, 0, 1):
            raise ConfigError(f"data.{name}={value!r}: it is a probability; use a number from 0 {meaning}")
    for name, files in (("files", config.data.files), ("eval_files", config.data.eval_files)):
        for i, entry in enumerate(files):
            if entry.task is not None and entry.task not in DATA_TASKS:
                raise ConfigError(
                    f"data.{name}.{i}.task={entry.task!r}; expected one of {', '.join(DATA_TASKS)} (describe when "
                    "left out)"
                )
    # A new model (tiny or composed) states its tasks here; a model.base is checked when its config is read.
    new_fields = config.model.tiny if config.model.tiny is not None else config.model.config
    if config.model.base is None and "boxes" not in (new_fields.get("tasks") or []):
        for name, files in (("files", config.data.files), ("eval_files", config.data.eval_files)):
            for i, entry in enumerate(files):
                if entry.task in ("sot", "rsot"):
                    where = "model.tiny" if config.model.tiny is not None else "model.config"
                    raise ConfigError(
                        f"data.{name}.{i} has task: {entry.task} (box output), but the new model is not made to write "
                        f"boxes; set {where}.tasks: [describe, boxes] and {where}.video_layout: frames"
                    )
    box_jitter = config.data.sot_box_jitter
    if not is_real(box_jitter, 0, 0.5):
        raise ConfigError(
            f"data.sot_box_jitter={box_jitter!r}: the largest move of an SOT prompt box's edge as a fraction of "
            "the box's size; use a number from 0 (exact box) to 0.5"
        )
    shift = config.data.sot_box_shift
    if not is_real(shift, 0, 1):
        raise ConfigError(
            f"data.sot_box_shift={shift!r}: the largest move of an SOT prompt box, its size kept, as a fraction of "
            "its size; use a number from 0 (no move) to 1"
        )
    noise = config.data.box_history_noise
    if not is_int(noise, 0, 20):
        raise ConfigError(
            f"data.box_history_noise={noise!r}: the largest move of an answer box the LLM reads back, in units of "
            "the 0..100 box grid; use a whole number from 0 (exact) to 20"
        )
    cache_mb = config.data.video_cache_mb
    if not is_real(cache_mb, 0, 2**20):
        raise ConfigError(
            f"data.video_cache_mb={cache_mb!r}: the size in MB of the decoded-video store the box-output files "
            "share; use a number from 0 (off) to 1048576"
        )
    if config.data.bad_records not in ("raise", "skip"):
        raise ConfigError(f"data.bad_records={config.data.bad_records!r}; expected 'raise' or 'skip'")


def check_paths(config: TrainConfig) -> None:
    """Every file and directory the config names must exist (checked before the model is built)."""
    named: list[tuple[str, str | None]] = [
        ("model.base", config.model.base),
        ("model.vision_tower", config.model.vision_tower),
        ("model.language_model", config.model.language_model),
        ("data.cache_dir", config.data.cache_dir),
    ]
    deepspeed = config.training.get("deepspeed")
    if isinstance(deepspeed, str):  # it may also be an inline dict
        named.append(("training.deepspeed", deepspeed))
    named += [(f"data.files.{i}.path", f.path) for i, f in enumerate(config.data.files)]
    named += [(f"data.eval_files.{i}.path", f.path) for i, f in enumerate(config.data.eval_files)]
    for i, spec in enumerate((config.model.tiny or {}).get("vocab_from", [])):
        named.append((f"model.tiny.vocab_from.{i}", str(spec).partition(":")[2] or str(spec)))
    for key, path in named:
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{key}: {path} does not exist; fix the path in the config or pass --{key} PATH")


# --- loading -----------------------------------------------------------------------------------------
# jsonargparse reads the YAML file, applies ``--section.key value`` overrides, and checks every key and
# every value's type against the dataclasses above. What it does not do is done here: ``$VAR``
# expansion, overrides of list items (``--data.files.0.path``), the closest-key suggestion, the keys of
# ``training`` (TrainingArguments) and the checks of :func:`validate`.

# YAML 1.1 (PyYAML) reads ``1e-4`` (no dot) as a string; every other reader takes it as a number.
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_PARSER_MODE = "artemis_yaml"  # the name jsonargparse knows _load_yaml by


def _expand(value: Any) -> Any:
    """``$VAR`` / ``${VAR}`` in strings come from the environment (an unset one is an error); ``1e-4`` is a float."""
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        return float(value)
    if isinstance(value, str) and "$" in value:
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            raise ConfigError(f"{value!r} names an environment variable that is not set; export it first")
        return expanded
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _load_yaml(text: str) -> Any:
    """How the config file and the override values are read: YAML, then :func:`_expand`."""
    return _expand(yaml.safe_load(text))


@functools.cache
def _parser() -> jsonargparse.ArgumentParser:
    jsonargparse.set_loader(_PARSER_MODE, _load_yaml, exceptions=(yaml.YAMLError,))
    parser = jsonargparse.ArgumentParser(prog="artemis train", exit_on_error=False, parser_mode=_PARSER_MODE)
    parser.add_argument("--config", action=jsonargparse.ActionConfigFile)
    parser.add_class_arguments(TrainConfig, skip={"source"}, fail_untyped=True)
    return parser


def _config_error(error: Exception, source: str | None) -> ConfigError:
    """A jsonargparse error as one line: the key, what is wrong with it and, for an unknown key, the closest one."""
    text = " ".join(str(error).split())
    parent = re.search(r'Parser key "([\w.]+)"', text)
    if match := re.search(r"Group '([\w.]+)' does not accept option '([\w.]+)'", text):
        key = f"{match[1]}.{match[2]}"
    elif match := re.search(r"Option '([\w.]+)' is not accepted|unrecognized arguments: --([\w.]+)", text):
        key = (f"{parent[1]}." if parent else "") + (match[1] or match[2])
    else:
        key = None
    if key is not None and isinstance(unknown := _schema_field(key), ConfigError):
        return unknown
    where = f"config {source}" if source else "the config"
    expected = dict.fromkeys(re.findall(r"Expected an? <class '(\w+)'>", text))  # in order, once each
    value = re.search(r"(?:Got|Given) value: (.*)", text)
    if parent and expected and value:
        field_ = _schema_field(parent[1])
        names = sorted(expected, key=lambda name: name == "NoneType")  # null last, as in ``int | None``
        types = " or ".join("null" if name == "NoneType" else name for name in names)
        if isinstance(field_, dataclasses.Field) and "expected" in field_.metadata:
            types = field_.metadata["expected"]
        return ConfigError(f"{parent[1]}={value[1]}: expected {types}; fix it in {where} or pass --{parent[1]} VALUE")
    if parent and (loaded := re.search(r"Unable to load config '(.*?)'", text)):  # --train 3: read as a file
        return ConfigError(
            f"config section {parent[1]!r} must be a mapping, got {loaded[1]}; "
            f"set its keys with --{parent[1]}.KEY VALUE"
        )
    if text.startswith("Problems parsing config"):
        return ConfigError(f"{where} is not valid YAML: {text.partition(':')[2].strip()}")
    if text.startswith("Unexpected config"):
        return ConfigError(f"{where} must be a YAML mapping at the top level")
    if "arguments are required: stage" in text:
        return ConfigError(f"{where} needs a 'stage' (a name written into the stage output) and a 'model' section")
    if parent and (missing := re.search(r"arguments are required: ([\w.]+)", text)):
        return ConfigError(f"an entry of {parent[1]} has no {missing[1]!r}; write {{format, path, weight}} entries")
    if parent:
        detail = re.sub(r"Problem with given class_path '[\w.]+': ", "", text.partition(":")[2].strip())
        return ConfigError(f"{parent[1]}: {detail}")
    return ConfigError(f"{where}: {text}")


def _pairs(overrides: list[str]) -> list[tuple[str, str]]:
    """``["--training.learning_rate", "1e-4", "--data.files.0.path=X"]`` as ``(key, text)`` pairs."""
    pairs: list[tuple[str, str]] = []
    items = list(overrides)
    while items:
        item = items.pop(0)
        if not item.startswith("--"):
            raise ConfigError(f"expected an override like --section.key VALUE, got {item!r}")
        key = item[2:]
        if "=" in key:
            key, text = key.split("=", 1)
        elif items and not items[0].startswith("--"):
            text = items.pop(0)
        else:
            raise ConfigError(f"override --{key} has no value; write --{key} VALUE")
        pairs.append((key, text))
    return pairs


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (list items by index: ``data.files.0.path``) in a parsed config mapping."""
    node: Any = raw
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override --{key}: {part!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if last:
            node[part] = value
        else:
            if node.get(part) is None:  # a section left empty (or null) in the YAML
                node[part] = {}
            node = node[part]


def _sets_a_list(key: str, text: str) -> bool:
    """Whether an override sets a list item (``data.files.0.path``) or a whole list (``--data.files "[...]"``)."""
    if any(part.isdigit() for part in key.split(".")):
        return True
    try:
        return isinstance(yaml.safe_load(text), list)
    except yaml.YAMLError:
        return False


# Config fields that are free-form mappings (model.tiny, model.config, training): jsonargparse sets a key
# one level inside them, but a deeper key (--model.tiny.text_config.num_hidden_layers 4) it would store as
# the string "4" in a new mapping that replaces the YAML's whole text_config. Such keys are set here.
_MAPPINGS = ("model.tiny.", "model.config.", "training.")


def _inside_a_mapping(key: str) -> bool:
    """Whether an override sets a key nested two or more levels inside a free-form mapping field."""
    return any(key.startswith(prefix) and "." in key[len(prefix) :] for prefix in _MAPPINGS)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``["--training.learning_rate", "1e-4", ...]`` to a parsed config mapping (values read as YAML)."""
    for key, text in _pairs(overrides):
        _set(raw, key, _load_yaml(text) if text != "" else None)
    return raw


def _build(parser: jsonargparse.ArgumentParser, namespace: jsonargparse.Namespace, source: str | None) -> TrainConfig:
    """Sections left empty take their defaults; then the checks no type can express, and the dataclasses."""
    defaults = parser.get_defaults()
    if namespace.training is None:  # ``training:`` left empty
        namespace.training = {}
    for name in _SECTIONS:
        if namespace[name] is None:
            namespace[name] = defaults[name]
        elif not isinstance(namespace[name], jsonargparse.Namespace):
            raise ConfigError(f"config section {name!r} must be a mapping, got {namespace[name]!r}")
    _check_training(namespace.training)
    objects = parser.instantiate(namespace)
    config = TrainConfig(**{name: objects[name] for name in _TOP_KEYS}, source=source)
    validate(config)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply command-line overrides, expand ``$VARS`` and validate it.

    Relative paths in the config are relative to the working directory (as in the scripts).

    Args:
        path: the YAML file (``configs/stage3_referring.yaml``).
        overrides: ``["--training.learning_rate", "1e-4", "--data.files.0.path=FILE", ...]``; values are
            read as YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist; the presets are in configs/ (e.g. stage3_referring.yaml)")
    pairs = _pairs(overrides or [])
    # jsonargparse sets the keys of sections and mappings. Lists are set here, in the parsed mapping, which
    # is then checked again: jsonargparse has no override of one item (data.files.0.path), and it merges a
    # whole new list item by item with the YAML's (a new entry without a path would take the old one's).
    # The same for keys nested inside a free-form mapping (_MAPPINGS), merged into the YAML's mapping.
    items = [(key, text) for key, text in pairs if _sets_a_list(key, text) or _inside_a_mapping(key)]
    flags = [f"--{key}={text if text != '' else 'null'}" for key, text in pairs if (key, text) not in items]
    parser = _parser()
    try:
        namespace = parser.parse_args(["--config", str(path), *flags])
        if items:
            raw = namespace.as_dict()
            raw.pop("config", None)
            for key, text in items:
                _set(raw, key, _load_yaml(text) if text != "" else None)
            namespace = parser.parse_object(raw)
    except jsonargparse.ArgumentError as error:
        raise _config_error(error, str(path)) from None
    return _build(parser, namespace, str(path))
