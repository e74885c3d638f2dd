#!/usr/bin/env bash
# The default model, synthref-tiny, from nothing on a CPU: generate SynthRef, run the three stages (stage 3
# in four parts: region words, referring, pair questions, mask prompts), write the merged model, and score it
# on a held-out test split (descriptions, questions about two objects, and mask against box prompts).
#   OUT         output root (default runs/synthref-tiny); the merged model is $OUT/synthref-tiny
#   SEED        data seed (default 0); splits draw from disjoint seed streams, so train and test never overlap
#   NUM_VIDEOS  training videos (default 1200)
#   INSTALL=1   also copy the model into artemis/assets/synthref-tiny (the bundled default)
#   CONFIGS     the stage configs' directory (default configs/synthref_tiny), for variants of the recipe
# Arguments are passed to every stage as config overrides.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OUT="${OUT:-runs/synthref-tiny}"
export SYNTHREF="${SYNTHREF:-$OUT/data}"
SEED="${SEED:-0}"
NUM_VIDEOS="${NUM_VIDEOS:-1200}"
CONFIGS="${CONFIGS:-configs/synthref_tiny}"
start=$(date +%s)

artemis data synthref --out "$SYNTHREF" --num-videos "$NUM_VIDEOS" --seed "$SEED" --split train
artemis data synthref --out "$SYNTHREF" --num-videos 100 --seed "$SEED" --split test
artemis train --config "$CONFIGS/stage1_pretrain.yaml" "$@"
# The vision tower is frozen in every stage: run it once over every training video; stages 2 and 3
# read its features from the cache.
data=()
for file in llava:llava_stage1.json llava:llava_stage2.json videoref45k:videoref45k.json \
    videoref45k:videoref45k_attributes.json videoref45k:videoref45k_pairs.json; do
    data+=(--data "${file%%:*}:$SYNTHREF/train/${file#*:}")
done
artemis data cache "${data[@]}" --model "$OUT/stage1/base" --out "$OUT/cache" --tracker none --features
for stage in stage2_finetune stage3_region_words stage3_referring stage3_pairs stage3_masks; do
    artemis train --config "$CONFIGS/$stage.yaml" "$@"
done
artemis merge-lora "$OUT/stage3-masks" "$OUT/synthref-tiny"
cp scripts/train/synthref_tiny_card.md "$OUT/synthref-tiny/README.md"  # the model card (what it knows)
echo "trained in $(( $(date +%s) - start )) s; model in $OUT/synthref-tiny ($(du -sh "$OUT/synthref-tiny" | cut -f1))" >&2

if [ "${INSTALL:-0}" = "1" ]; then
    rm -rf artemis/assets/synthref-tiny
    mkdir -p artemis/assets
    cp -r "$OUT/synthref-tiny" artemis/assets/synthref-tiny
    echo "installed as the bundled default: artemis/assets/synthref-tiny" >&2
fi
if [ "${EVAL:-1}" = "1" ]; then
    artemis eval synthref --model "$OUT/synthref-tiny" --data "$SYNTHREF/test" --out "$OUT/eval-test" --json
    # The first 500 pair questions (of about 1,400; all of them take about 20 minutes on 2 cores).
    artemis eval synthref --task pairs --model "$OUT/synthref-tiny" --data "$SYNTHREF/test" --out "$OUT/eval-pairs" \
        --limit 500 --max-new-tokens 12 --json
    # Each target on the frame where its box covers most of another object, given by its box, then its mask.
    for prompt in box mask; do
        artemis eval synthref --model "$OUT/synthref-tiny" --data "$SYNTHREF/test" --out "$OUT/eval-overlap-$prompt" \
            --prompt-frame overlap --prompt "$prompt" --no-controls --json
    done
fi
