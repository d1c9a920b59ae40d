#!/bin/bash
# dump --leave-running: the original keeps running and writing; once it is killed, the image
# still restores into a process that runs on.
source "$(dirname "$0")/lib.sh"

dir=$T/loop
img=$T/img
pid=$(start_loop "$dir")
SHOW_ON_FAIL=("$dir/loop.log" "$img/dump.log" "$img/restore.log")
wait_lines "$dir/loop.log" 2 10

cr_capture dump -t "$pid" -D "$img" --leave-running
[[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid failed ($CR_RC): $CR_ERR"
[[ -s $img/manifest.cr ]] || fail "no manifest.cr in $img"
is_running "$pid" || fail "pid $pid is gone after dump --leave-running"
assert_untraced "$pid"
n=$(line_count "$dir/loop.log")
sleep 3
m=$(line_count "$dir/loop.log")
((m - n >= 2)) || fail "original's log grew by $((m - n)) line(s) in 3 s after the dump, expected 2"

ids=$(tree_ids "$pid")
kill_tree "$pid"
wait_pid_free "$pid" $ids
log "original killed; restoring"

before=$(line_count "$dir/loop.log")
cr_capture restore -D "$img" -d
[[ $CR_RC -eq 0 ]] || fail "cr restore -D $img -d failed ($CR_RC): $CR_ERR"
is_running "$pid" || fail "pid $pid does not run after restore -d"
sleep 3
after=$(line_count "$dir/loop.log")
((after - before >= 2)) || fail "restored log grew by $((after - before)) line(s) in 3 s, expected 2"
log "ok: left running, then restored as $pid"
