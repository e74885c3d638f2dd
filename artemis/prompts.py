"""Every prompt string, for training and inference alike: one place, so the two can never drift apart.

The conversation template, the Artemis referring layout, Elysium's box-output questions and answers
(boxes as text), and SynthRef's phrasings. The original Artemis trained with a ``USER:`` template and
evaluated with one that said ``human``; artemis uses :data:`VICUNA_V1` for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from artemis.boxes import format_elysium_box
from artemis.errors import ConfigError

VIDEO_TOKEN = "<video>"
REGION_TOKEN = "<region>"
IMAGE_TOKEN = "<image>"
VIDEO_FRAME_SLOT = "<video:frame>"
"""The video tokens of one frame in the ``"frames"`` layout (``tokens_per_frame`` placeholder ids)."""


@dataclass(frozen=True)
class ConversationTemplate:
    """A two-role chat template in the FastChat "two separators" style (Vicuna v1)."""

    name: str
    system: str
    roles: tuple[str, str]
    sep: str
    sep2: str

    def render(self, turns: list[tuple[str, str | None]]) -> str:
        """Render ``[(user, assistant | None), ...]``; a ``None`` answer leaves the prompt open."""
        text = self.system + self.sep
        for user, assistant in turns:
            text += f"{self.roles[0]}: {user}{self.sep}{self.roles[1]}:"
            if assistant is not None:
                text += f" {assistant}{self.sep2}"
        return text


VICUNA_V1 = ConversationTemplate(
    name="vicuna_v1",
    system=(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
    roles=("USER", "ASSISTANT"),
    sep=" ",
    sep2="</s>",
)

# --- Artemis (stage 3, referring) ----------------------------------------------------------------

TRACKING_NOTE = " This is the region's video tracking list:"
"""Appended to a referring question, followed by the ``<region>`` placeholder of the target."""

DESCRIBE_QUESTIONS = (
    "What is the <region> doing in this video?",
    "Describe what the <region> does in this video.",
    "What does the <region> do throughout the video?",
    "Can you describe the actions of the <region> in this video?",
    "Tell me what the <region> is doing over the course of the video.",
)
"""Paraphrases of the describe question; index 0 is the one inference uses by default."""


REGION_KEY_SLOT = "<region:key>"
"""The key-frame token of a region (1 placeholder id), where the question names the target."""
REGION_TRACK_SLOT = "<region:track>"
"""The selected tracked tokens of a region (``num_selected`` placeholder ids), after the tracking note."""


def referring_prompt(question: str, num_regions: int = 1) -> str:
    """The user turn of a referring question: ``<video>``, the question, the tracking-list note.

    With one region the layout is the original Artemis one: the key-frame token stands where the
    question names the target and the selected tracked tokens follow the note, e.g.
    ``"<video>\nWhat is the <region:key> doing in this video? This is the region's video tracking
    list:<region:track>"``. A question without ``<region>`` gets the key token after the note too.

    With several regions the question's ``<region>``s become ``region1``, ``region2``, ... and the note
    lists a full ``<region>`` (key + tracked tokens) per region, so each region's tokens stay together.
    The processor expands ``<region>`` to ``1 + k`` ids, ``<region:key>`` to 1 and ``<region:track>`` to k.
    """
    if num_regions < 1:
        raise ValueError(f"num_regions must be >= 1, got {num_regions}")
    count = question.count(REGION_TOKEN)
    if count not in (0, num_regions):
        raise ValueError(
            f"question {question!r} names {count} <region> placeholders but {num_regions} regions were given"
        )
    if num_regions == 1:
        if count:
            body, note = question.replace(REGION_TOKEN, REGION_KEY_SLOT), TRACKING_NOTE + REGION_TRACK_SLOT
        else:
            body, note = question, TRACKING_NOTE + REGION_TOKEN
    else:
        body = question
        for index in range(1, num_regions + 1):
            body = body.replace(REGION_TOKEN, f"region{index}", 1)
        note = "".join(f" region{i}'s video tracking list:{REGION_TOKEN}" for i in range(1, num_regions + 1))
        note = " These are the regions' video tracking lists:" + note
    return f"{VIDEO_TOKEN}\n{body}{note}"


# --- Elysium (box output: the LLM writes the target's box on every frame) ----------------------------

ELYSIUM_SOT_QUESTION = (
    "This is a video showing an object with coordinates {box} in Frame 1. "
    "Provide the coordinates of this object in each frame."
)
ELYSIUM_RSOT_QUESTION = "Please find {expression} in every frame and provide the coordinates of it."
ELYSIUM_REG_QUESTION = "Describe the object at {box} in Frame 1 throughout the video."


def elysium_frames_prefix(num_frames: int) -> str:
    """``"Frame 1: <image>, Frame 2: <image>, ...\\n"``, the layout Elysium puts before a question."""
    return ", ".join(f"Frame {i}: {IMAGE_TOKEN}" for i in range(1, num_frames + 1)) + "\n"


def frames_prompt(num_frames: int, question: str, padding_frames: int = 0) -> str:
    """The user turn of a box-output clip: ``"Frame 1: <video:frame>, ..., Frame n: <video:frame>"``, the
    unlabelled slots of ``padding_frames`` zero frames (so the count matches the model's ``num_frames``),
    then ``"\\n"`` and the question."""
    labelled = elysium_frames_prefix(num_frames).rstrip("\n").replace(IMAGE_TOKEN, VIDEO_FRAME_SLOT)
    return f"{labelled}{VIDEO_FRAME_SLOT * padding_frames}\n{question}"


def normalize_expression(expression: str) -> str:
    """A referring expression as it goes into the RSOT question: no trailing full stop, lower-case first
    letter unless the first word is an acronym ("The red circle." -> "the red circle").

    Raises:
        ConfigError: the expression is empty.
    """
    text = " ".join(expression.split()).rstrip(" .")
    if not text:
        raise ConfigError("the referring expression is empty; give a phrase such as 'the red circle'")
    first = text.split(" ", 1)[0]
    return text if first.isupper() and len(first) > 1 else text[0].lower() + text[1:]


def sot_question(box_square: Sequence[float] | np.ndarray) -> str:
    """Elysium's SOT question for a normalised box on the square input."""
    return ELYSIUM_SOT_QUESTION.format(box=format_elysium_box(np.clip(box_square, 0.0, 1.0)))


def rsot_question(expression: str) -> str:
    """Elysium's RSOT question for a referring expression."""
    return ELYSIUM_RSOT_QUESTION.format(expression=normalize_expression(expression))


def format_box_answer(boxes_square: np.ndarray) -> str:
    """``"Frame 1: [..], Frame 2: [..], ..."`` from (n, 4) normalised boxes; a NaN row (target absent)
    is written ``[0,0,0,0]``."""
    parts = []
    for index, box in enumerate(np.asarray(boxes_square, dtype=np.float64).reshape(-1, 4), start=1):
        shown = np.zeros(4) if not np.isfinite(box).all() else np.clip(box, 0.0, 1.0)
        parts.append(f"Frame {index}: {format_elysium_box(shown)}")
    return ", ".join(parts)


def box_output_vocabulary() -> list[str]:
    """Texts covering every word of box-output prompts and answers (for word-level tiny tokenizers):
    the two questions, frame labels and the numbers 0..100."""
    numbers = " ".join(str(v) for v in range(101))
    sample = format_box_answer(np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]))
    return [
        numbers,
        sample,
        elysium_frames_prefix(2).replace(IMAGE_TOKEN, VIDEO_TOKEN),
        ELYSIUM_SOT_QUESTION.format(box=format_elysium_box([0.1, 0.2, 0.3, 0.4])),
        ELYSIUM_RSOT_QUESTION.format(expression="it"),
    ]


# --- SynthRef (the project's synthetic referential data) -------------------------------------------
# Several phrasings per meaning, so a model trained on SynthRef learns the attributes, not one
# sentence. Fields: {colour}, {shape}, {size}, {from_to} ("from left to right"), {toward} ("to the
# right"), {motion} (a verb phrase: "moves to the right", "stays still"), {count}, {objects}.

SYNTHREF_MOVING_CAPTIONS = (
    "The {colour} {shape} moves {from_to}.",
    "A {colour} {shape} is moving {toward}.",
    "The {size} {colour} {shape} travels {toward}.",
    "A {size} {colour} {shape} goes {from_to}.",
)
"""Descriptions of one moving SynthRef object."""

SYNTHREF_STILL_CAPTIONS = (
    "The {colour} {shape} stays still.",
    "A {colour} {shape} does not move.",
    "The {size} {colour} {shape} remains in place.",
)
"""Descriptions of one SynthRef object that does not move."""

SYNTHREF_SCENE_QUESTIONS = (
    "Describe this video briefly.",
    "What happens in this video?",
    "Give a short description of the video.",
)
"""Stage-1 (alignment) questions; the answer is the scene caption."""

SYNTHREF_SCENE_CAPTION = "There are {count} objects: {objects}."
"""Stage-1 scene caption; ``{objects}`` lists "a {size} {colour} {shape} that {motion}" phrases."""

SYNTHREF_COUNT_QUESTION = "How many objects are there in the video?"
SYNTHREF_COUNT_ANSWER = "There are {count} objects."
SYNTHREF_COLOUR_QUESTION = "What colour is the {shape} that {motion}?"
SYNTHREF_COLOUR_ANSWER = "It is {colour}."
SYNTHREF_SHAPE_QUESTION = "What shape is the {colour} object that {motion}?"
SYNTHREF_SHAPE_ANSWER = "It is a {shape}."
SYNTHREF_MOTION_QUESTION = "In which direction does the {colour} {shape} move?"
SYNTHREF_SIZE_QUESTION = "Is the {colour} {shape} large or small?"
SYNTHREF_SIZE_ANSWER = "It is {size}."
SYNTHREF_REGION_QUESTIONS = {
    "colour": ("What colour is the <region>?", "Which colour does the <region> have?"),
    "shape": ("What shape is the <region>?", "Which shape does the <region> have?"),
    "motion": ("In which direction does the <region> move?", "Where does the <region> go in this video?"),
}
"""Short referring questions about one attribute of the boxed object (``videoref45k_attributes.json``)."""
SYNTHREF_COLOUR_COUNT_QUESTION = "How many {colour} objects are there?"
