# Sourced by the stage scripts. One launch for every size: `artemis train` under torchrun, one process per
# GPU of this node, on one node or several; DeepSpeed comes from the config's training.deepspeed.
#   NUM_GPUS     processes on this node (default: the visible GPUs; without a GPU, 1 process on the CPU)
#   NNODES       nodes in the job (default 1); with more, also NODE_RANK (0..NNODES-1) and MASTER_ADDR
#                (node 0's address) on every node, and MASTER_PORT (default 29500)
# Extra arguments are config overrides (--training.learning_rate 1e-4 ...).
# torchrun even for one process: it sets RANK, WORLD_SIZE and MASTER_ADDR, without which DeepSpeed would
# look for MPI (mpi4py) to find its peers.
launch_stage() {
    local config="$1"
    shift
    local procs="${NUM_GPUS:-$(python -c 'import torch; print(torch.cuda.device_count())')}"
    if [ "$procs" -lt 1 ]; then
        procs=1
    fi
    if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"  # DeepSpeed's CPU accelerator (gloo)
    fi
    local nodes="${NNODES:-1}"
    local rendezvous=(--standalone)
    if [ "$nodes" -gt 1 ]; then
        require_env NODE_RANK MASTER_ADDR
        rendezvous=(--nnodes "$nodes" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
            --master_port "${MASTER_PORT:-29500}")
    fi
    python -m torch.distributed.run "${rendezvous[@]}" --nproc_per_node "$procs" \
        -m artemis.cli train --config "$config" "$@"
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
