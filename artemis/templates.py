"""Prompt text used by training and inference alike: one place, so the two can never drift apart.

The original Artemis trained with a ``USER:`` template and evaluated with one that said ``human``;
artemis uses :data:`VICUNA_V1` for both.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_TOKEN = "<video>"
REGION_TOKEN = "<region>"
IMAGE_TOKEN = "<image>"


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


# --- Elysium ---------------------------------------------------------------------------------------

ELYSIUM_SOT_QUESTION = (
    "This is a video showing an object with coordinates {box} in Frame 1. "
    "Provide the coordinates of this object in each frame."
)
ELYSIUM_RSOT_QUESTION = "Please find {expression} in every frame and provide the coordinates of it."
ELYSIUM_REG_QUESTION = "Describe the object at {box} in Frame 1 throughout the video."


def elysium_frames_prefix(num_frames: int) -> str:
    """``"Frame 1: <image>, Frame 2: <image>, ...\\n"``, the layout Elysium puts before a question."""
    return ", ".join(f"Frame {i}: {IMAGE_TOKEN}" for i in range(1, num_frames + 1)) + "\n"


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
