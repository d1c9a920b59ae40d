#!/bin/bash
# Pipes and fifos: wl_fifo (a fifo between parent and child with queued data, a fifo filled to a
# raised capacity, read-write and O_PATH fifo ends, a full pipe, a 1 MiB pipe read by the child,
# a packet-mode pipe) is dumped and restored and checks itself. A fifo removed between dump and
# restore stops the restore with a clear error and loses nothing.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_fifo" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
ids=$(tree_ids "$pid")
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone $ids
wait_pid_free $ids

mv "$wl/b" "$T/b.moved"
cr_capture restore -D "$img" -d
if is_running "$pid"; then track "$pid" wl_fifo; fi
expect_cr_error restore "fifo $wl/b" "no longer exists"
! is_running "$pid" || fail "pid $pid runs after the refused restore"
mv "$T/b.moved" "$wl/b"
wait_pid_free $ids

timeout -k 5 60 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 60 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_fifo: ok$' "$T/wl.log" || fail "no 'wl_fifo: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
log "ok: pipes and fifos restored with their data"
