#!/bin/bash
# Process fidelity, signals: wl_signals (every sigaction flag on its own signal with its own
# mask, per-thread masks and alternate stacks, thread-private and process-wide pending signals
# with their siginfo, queued real-time duplicates, a thread blocked in read) is dumped,
# restored (not detached: cr restore returns the workload's exit status) and checks itself,
# then exercises every action.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_signals" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
[[ $(proc_comm "$pid") == wl_signals ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_signals"

mapfile -t ids < <(tree_ids "$pid")
log "dumping wl_signals $pid (ids: ${ids[*]})"
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone "${ids[@]}"
[[ ! -e $wl/result ]] || fail "wl_signals wrote a result before go"
wait_pid_free "${ids[@]}"

restore_and_check wl_signals "$wl" "$img" "$T/wl.log" 120
log "ok: wl_signals restored and checked itself"
