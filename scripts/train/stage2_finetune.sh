#!/usr/bin/env bash
# Artemis stage 2 at real scale: instruction tuning, full LLM + projector (configs/stage2_finetune.yaml).
#   ARTEMIS_DATA  data root holding stage2/llava_image_tune_.json, stage2/videochatgpt_tune_.json and
#                 stage2/nlp_tune.json (LLaVA format)
#   ARTEMIS_OUT   output root; reads $ARTEMIS_OUT/stage1, writes $ARTEMIS_OUT/stage2
# Optional: NUM_GPUS (default: all visible), NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT for several nodes
# (scripts/train/_launch.sh). Arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/train/_launch.sh
require_env ARTEMIS_DATA ARTEMIS_OUT
launch_stage configs/stage2_finetune.yaml "$@"
