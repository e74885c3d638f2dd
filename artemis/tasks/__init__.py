"""Tasks that use a model: one request given a model, its processor and a video source.

* :mod:`artemis.tasks.referring` — describe a target or answer a question about targets (Artemis);
* :mod:`artemis.tasks.box_output` — the LLM writes the target's box on every frame (Elysium SOT / RSOT);
* :mod:`artemis.tasks.pipeline` — :class:`VideoPipeline`, the model with tracker settings behind the verbs.
"""

from artemis.tasks.box_output import BoxOutTrack, BoxStatus, require_task, track_with_llm
from artemis.tasks.pipeline import DescribeRequest, VideoPipeline
from artemis.tasks.referring import Description

__all__ = [
    "BoxOutTrack",
    "BoxStatus",
    "DescribeRequest",
    "Description",
    "VideoPipeline",
    "require_task",
    "track_with_llm",
]
