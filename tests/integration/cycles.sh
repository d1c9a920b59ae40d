#!/bin/bash
# 20 dump/restore cycles in a row on one shell loop. Each cycle: dump (the loop dies), wait for
# its PIDs, restore -d, see the log grow. At the end every line is still a timestamp, in order,
# and there are at least 20 more of them.
source "$(dirname "$0")/lib.sh"

cycles=${CR_TEST_CYCLES:-20}
dir=$T/loop
pid=$(start_loop "$dir")
logf=$dir/loop.log
SHOW_ON_FAIL=("$logf")
wait_lines "$logf" 2 10
start=$(line_count "$logf")
t0=$SECONDS

for ((i = 1; i <= cycles; i++)); do
    img=$T/img-$i
    SHOW_ON_FAIL=("$logf" "$img/dump.log" "$img/restore.log")
    ids=$(tree_ids "$pid")
    cr_capture dump -t "$pid" -D "$img"
    [[ $CR_RC -eq 0 ]] || fail "cycle $i: cr dump -t $pid failed ($CR_RC): $CR_ERR"
    wait_gone "$pid"
    wait_pid_free "$pid" $ids
    n=$(line_count "$logf")
    cr_capture restore -D "$img" -d
    [[ $CR_RC -eq 0 ]] || fail "cycle $i: cr restore -D $img -d failed ($CR_RC): $CR_ERR"
    is_running "$pid" || fail "cycle $i: pid $pid does not run after restore"
    wait_lines "$logf" $((n + 1)) 5
    rm -rf "$img"
done

end=$(line_count "$logf")
((end - start >= cycles)) || fail "log grew by $((end - start)) lines over $cycles cycles, expected $cycles"
prev=0
lineno=0
while IFS= read -r line; do
    lineno=$((lineno + 1))
    [[ $line =~ ^[0-9]+$ ]] || fail "line $lineno of the log is not a timestamp: '$line'"
    ((line >= prev)) || fail "line $lineno of the log goes back in time: $prev then $line"
    prev=$line
done <"$logf"
log "ok: $cycles cycles in $((SECONDS - t0)) s, log grew by $((end - start)) lines"
