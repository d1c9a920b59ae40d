#!/bin/bash
# Process fidelity, the tree: wl_tree (210 tasks: a chain 50 deep, a node with 100 children,
# sessions, process groups, a leaderless group, zombies, a stopped task, orphans re-parented to
# the root in a leaderless session) is dumped, restored (not detached: cr restore returns the
# workload's exit status) and told to check itself: every task its pid, ppid, pgid, sid and
# children, the zombies their exit statuses, the stopped one its state. Prints the wall time of
# the dump and of the restore (until cr says the tree runs).
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_tree" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
[[ $(proc_comm "$pid") == wl_tree ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_tree"

# Each task's record: "pid ppid pgid sid idx kind role". Every live one is killed on exit; the
# PIDs of all (zombies and the exited group leader too) must be free before the restore.
mapfile -t live < <(awk '$6 == "live" || $6 == "stopped" { print $1 }' "$wl"/tasks/*)
mapfile -t all < <(awk '{ print $1; print $3; print $4 }' "$wl"/tasks/* | sort -un)
for p in "${live[@]}"; do track "$p" wl_tree; done
ntasks=$(cat "$wl"/tasks/* | grep -vc ' exited ')
log "dumping wl_tree $pid: $ntasks tasks, ${#live[@]} of them alive, ${#all[@]} pids to free"

t0=$(date +%s.%N)
cr_capture dump -t "$pid" -D "$img"
t1=$(date +%s.%N)
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone "${live[@]}"
[[ ! -e $wl/result ]] || fail "wl_tree wrote a result before go"
wait_ids_free "${all[@]}"

restore_and_check wl_tree "$wl" "$img" "$T/wl.log" 120
echo "tree: dump $(elapsed "$t0" "$t1") s, restore $(restore_seconds "$img") ($ntasks tasks)"
log "ok: the tree of $ntasks tasks was restored and checked itself"
