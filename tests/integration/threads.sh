#!/bin/bash
# Process fidelity, threads: wl_threads (510 threads, each with its own name and blocked mask,
# blocked in futex, nanosleep, clock_nanosleep, read, poll, ppoll, epoll_wait and wait4 on a
# child process) is dumped, restored (not detached: cr restore returns the workload's exit
# status) and woken: every syscall must return what the wake-up implies, every thread keeps its
# tid, name, mask, robust list and rseq registration. Prints the wall time of the dump and of
# the restore (until cr says the tree runs).
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_threads" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
[[ $(proc_comm "$pid") == wl_threads ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_threads"

mapfile -t ids < <(tree_ids "$pid")
for c in $(descendants "$pid"); do track "$c" wl_threads; done
nthreads=$(ls /proc/"$pid"/task | wc -l)
log "dumping wl_threads $pid: $nthreads threads, ${#ids[@]} ids in the tree"

t0=$(date +%s.%N)
cr_capture dump -t "$pid" -D "$img"
t1=$(date +%s.%N)
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone "${ids[@]}"
[[ ! -e $wl/result ]] || fail "wl_threads wrote a result before go"
wait_ids_free "${ids[@]}"

timeout -k 5 120 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
# cr's own figure: from its start until the tree runs (the workload's check is not counted).
restore_s=$(sed -n 's/.*tree running again, root pid [0-9]*, \([0-9.]*\) s$/\1 s/p' "$img/restore.log")
[[ -n $restore_s ]] || restore_s="unknown (no 'tree running again' in restore.log)"
echo "threads: dump $(elapsed "$t0" "$t1") s, restore $restore_s ($nthreads threads)"
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 120 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_threads: ok$' "$T/wl.log" || fail "no 'wl_threads: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
grep '^wl_threads: after EINTR' "$T/wl.log" >&2 || true
log "ok: $nthreads threads restored, woken and checked"
