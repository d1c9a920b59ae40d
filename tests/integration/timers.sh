#!/bin/bash
# POSIX timers and interval timers across a dump and restore: wl_timers (ids with gaps, a
# queued signal with overrun 5, a 1 h timer with overrun 3, a thread-directed timer, one without
# notification, a CPU-time timer, alarm/virtual/profiling itimers) is dumped once with
# --leave-running (reading the timers must change nothing), then for good, restored (not
# detached, so cr restore returns the workload's own exit status) and told to check itself.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_timers" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
[[ $(proc_comm "$pid") == wl_timers ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_timers"

cr_capture dump -t "$pid" -D "$T/img-leave" --leave-running
[[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid failed ($CR_RC): $CR_ERR"
assert_untraced "$pid"
[[ -s $T/img-leave/timers.cr ]] || fail "the image has no timers.cr: $(ls "$T/img-leave")"
cr_capture decode "$T/img-leave/timers.cr"
[[ $CR_RC -eq 0 ]] || fail "cr decode timers.cr failed ($CR_RC): $CR_ERR"
assert_contains "$CR_OUT" '"overrun": 5' "cr decode timers.cr"
assert_contains "$CR_OUT" '"pending": true' "cr decode timers.cr"

ids=$(tree_ids "$pid")
log "dumping wl_timers $pid (ids: $(echo $ids))"
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone $ids
[[ ! -e $wl/result ]] || fail "wl_timers wrote a result before go"
wait_pid_free $ids

restore_start "$img" 180
release_then_go "$img" "$wl"
restore_finish wl_timers "$wl" "$img" "$T/wl.log" 180
log "ok: wl_timers restored and checked itself"
