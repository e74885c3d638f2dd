"""Training: stage configs (:mod:`~artemis.train.config`), model set-up with LoRA/QLoRA
(:mod:`~artemis.train.setup`), stage outputs (:mod:`~artemis.train.stages`) and the ``Trainer`` run
(:mod:`~artemis.train.runner`). Needs the ``train`` extra (peft, accelerate; bitsandbytes, DeepSpeed)."""

from artemis.train.config import TrainConfig, load_config
from artemis.train.runner import run_training
from artemis.train.stages import load_stage, merge_lora

__all__ = ["TrainConfig", "load_config", "load_stage", "merge_lora", "run_training"]
