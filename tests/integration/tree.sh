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

timeout -k 5 120 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
# cr's own figure: from its start until the tree runs (the workload's check is not counted).
restore_s=$(sed -n 's/.*tree running again, root pid [0-9]*, \([0-9.]*\) s$/\1 s/p' "$img/restore.log")
[[ -n $restore_s ]] || restore_s="unknown (no 'tree running again' in restore.log)"
echo "tree: dump $(elapsed "$t0" "$t1") s, restore $restore_s ($ntasks tasks)"
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 120 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_tree: ok$' "$T/wl.log" || fail "no 'wl_tree: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
log "ok: the tree of $ntasks tasks was restored and checked itself"
