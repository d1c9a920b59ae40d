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

restore_and_check wl_threads "$wl" "$img" "$T/wl.log" 120
echo "threads: dump $(elapsed "$t0" "$t1") s, restore $(restore_seconds "$img") ($nthreads threads)"
grep '^wl_threads: .*after EINTR' "$T/wl.log" >&2 || true
log "ok: $nthreads threads restored, woken and checked"
