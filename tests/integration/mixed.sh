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

timeout -k 5 180 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 180 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_mixed: ok$' "$T/wl.log" || fail "no 'wl_mixed: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
log "ok: wl_mixed restored and checked itself"
