# Sourced by the stage scripts: run `artemis train` on every visible GPU (torchrun), or on the CPU.
# NUM_GPUS overrides the count; extra arguments are config overrides (--training.learning_rate 1e-4 ...).
launch_stage() {
    local config="$1"
    shift
    local gpus="${NUM_GPUS:-$(python -c 'import torch; print(torch.cuda.device_count())')}"
    if [ "$gpus" -gt 1 ]; then
        torchrun --standalone --nproc_per_node "$gpus" -m artemis.cli train --config "$config" "$@"
    else
        python -m artemis.cli train --config "$config" "$@"
    fi
}

require_env() {
    local name
    for name in "$@"; do
        if [ -z "${!name:-}" ]; then
            echo "set $name first (see TRAIN_AND_VALIDATE.md)" >&2
            exit 2
        fi
    done
}
