#!/usr/bin/env bash
# Artemis stage 1 at real scale: projector alignment of Vicuna-7B v1.5 + CLIP ViT-L/14 (configs/stage1_pretrain.yaml).
#   ARTEMIS_CLIP_DIR  local clip-vit-large-patch14 directory
#   ARTEMIS_LLM_DIR   local vicuna-7b-v1.5 directory (weights + tokenizer)
#   ARTEMIS_DATA      data root holding stage1/llava_image_.json and stage1/valley_.json (LLaVA format)
#   ARTEMIS_OUT       output root; this stage writes $ARTEMIS_OUT/stage1
# Optional: NUM_GPUS (default: all visible), NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT for several nodes
# (scripts/train/_launch.sh). Arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/train/_launch.sh
require_env ARTEMIS_CLIP_DIR ARTEMIS_LLM_DIR ARTEMIS_DATA ARTEMIS_OUT
launch_stage configs/stage1_pretrain.yaml "$@"
