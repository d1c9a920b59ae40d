#!/bin/bash
# The foundation round trip: wl_mixed (memory, file mappings, threads with TLS, a pipe with
# queued data to a child, signal state, a file offset) is dumped, restored (not detached, so cr
# restore returns the workload's own exit status) and told to check itself.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_mixed" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
[[ $(proc_comm "$pid") == wl_mixed ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_mixed"

ids=$(tree_ids "$pid")
log "dumping wl_mixed $pid (ids: $(echo $ids))"
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone $ids
[[ ! -e $wl/result ]] || fail "wl_mixed wrote a result before go"
wait_pid_free $ids

restore_and_check wl_mixed "$wl" "$img" "$T/wl.log" 180
log "ok: wl_mixed restored and checked itself"
