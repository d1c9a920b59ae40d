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
dump_and_free "$pid" "$img"

mv "$wl/b" "$T/b.moved"
cr_capture restore -D "$img" -d
if is_running "$pid"; then track "$pid" wl_fifo; fi
expect_cr_error restore "fifo $wl/b" "no longer exists"
! is_running "$pid" || fail "pid $pid runs after the refused restore"
mv "$T/b.moved" "$wl/b"
wait_pid_free $ids

restore_and_check wl_fifo "$wl" "$img" "$T/wl.log"
log "ok: pipes and fifos restored with their data"
