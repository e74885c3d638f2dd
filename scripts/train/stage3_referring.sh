#!/usr/bin/env bash
# Artemis stage 3 at real scale: referring tuning on VideoRef45K with LoRA (configs/stage3_referring.yaml),
# then a merged model. QLORA=1 uses configs/stage3_referring_qlora.yaml (4-bit LLM, one 24 GB GPU).
#   ARTEMIS_DATA  data root holding stage3/videoref45k/: the release's JSON files and the frame folders
#                 their frame_path names (TRAIN_AND_VALIDATE.md)
#   ARTEMIS_OUT   output root; reads $ARTEMIS_OUT/stage2, writes $ARTEMIS_OUT/stage3 and $ARTEMIS_OUT/artemis-7b
# Optional: NUM_GPUS (default: all visible), NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT for several nodes
# (scripts/train/_launch.sh). Arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/train/_launch.sh
require_env ARTEMIS_DATA ARTEMIS_OUT
if [ "${QLORA:-0}" = "1" ]; then
    launch_stage configs/stage3_referring_qlora.yaml "$@"
    artemis merge-lora "$ARTEMIS_OUT/stage3-qlora" "$ARTEMIS_OUT/artemis-7b"
else
    launch_stage configs/stage3_referring.yaml "$@"
    artemis merge-lora "$ARTEMIS_OUT/stage3" "$ARTEMIS_OUT/artemis-7b"
fi
