#!/bin/bash
# The README demo as a test: a shell loop is dumped (and gone), restored detached under the same
# PID and session, and keeps writing its log.
source "$(dirname "$0")/lib.sh"

dir=$T/demo
img=$T/img
pid=$(start_loop "$dir")
SHOW_ON_FAIL=("$dir/loop.log" "$img/dump.log" "$img/restore.log")
wait_lines "$dir/loop.log" 2 10

ids=$(tree_ids "$pid")
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone "$pid"
[[ -s $img/manifest.cr ]] || fail "no manifest.cr in $img"
[[ $(stat -c %a "$img") == 700 ]] || fail "$img has mode $(stat -c %a "$img"), expected 700"
for f in "$img"/*; do
    [[ $(stat -c %a "$f") == 600 ]] || fail "$f has mode $(stat -c %a "$f"), expected 600"
done
log "dumped $pid; waiting for its ids to be free"
wait_pid_free "$pid" $ids

before=$(line_count "$dir/loop.log")
restored_at=$(date +%s)
cr_capture restore -D "$img" -d
[[ $CR_RC -eq 0 ]] || fail "cr restore -D $img -d failed ($CR_RC): $CR_ERR"
[[ -s $img/restore.log ]] || fail "no restore.log in $img"
is_running "$pid" || fail "pid $pid does not run after restore -d"
[[ $(proc_comm "$pid") == loop.sh ]] || fail "pid $pid is '$(proc_comm "$pid")', expected loop.sh"
sid=$(awk '{ sub(/.*\) /, ""); print $4 }' "/proc/$pid/stat" 2>/dev/null || true)
[[ $sid == "$pid" ]] || fail "restored $pid has session $sid, expected $pid"

sleep 3
after=$(line_count "$dir/loop.log")
((after - before >= 2)) || fail "log grew by $((after - before)) line(s) in 3 s after restore, expected 2"
last=$(tail -n1 "$dir/loop.log")
[[ $last =~ ^[0-9]+$ ]] && ((last >= restored_at)) ||
    fail "last log line '$last' is not a timestamp written after the restore ($restored_at)"
log "ok: $pid restored, log grew by $((after - before)) lines"
