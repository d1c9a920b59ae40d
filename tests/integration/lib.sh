# Sourced by every integration test: where things are, bookkeeping of the processes a test
# starts (killed by PID on exit, never by name), waiting for PIDs to become free, checks.
#
# Environment: CR_BIN (the cr binary, required), WL_DIR (workload binaries, default: next to
# cr), CR_FAULT_HANDLER_DIR and CR_BADABI_HANDLER (test-only handlers, for the tests using them).
set -euo pipefail
shopt -s inherit_errexit # helpers run in $(...) stop at the first failure too

# Descriptors inherited from whoever runs the test (ctest keeps its log open) would be inherited
# by every workload and dumped with it: a log replaced meanwhile would then fail the restore.
# Bash reads the script itself through fd 255.
for _fd in /proc/self/fd/*; do
    _fd=${_fd##*/}
    if ((_fd > 2 && _fd != 255)); then eval "exec $_fd>&-"; fi
done
unset _fd

CR=${CR_BIN:?CR_BIN must name the cr binary}
WL_DIR=${WL_DIR:-$(dirname "$CR")}
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "/tmp/cr-$TEST_NAME.XXXXXX")
TRACK_FILE=$T/.tracked      # "PID COMM" per line; a file, so subshells can add to it
SHOW_ON_FAIL=()             # files whose tail fail() prints
: >"$TRACK_FILE"

log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

fail() {
    local f
    printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
    for f in "${SHOW_ON_FAIL[@]}"; do
        [[ -s $f ]] || continue
        printf -- '--- last lines of %s\n' "$f" >&2
        tail -n 30 "$f" >&2 || true
    done
    exit 1
}

assert_contains() { # TEXT NEEDLE [WHAT]
    [[ $1 == *"$2"* ]] || fail "${3:-output} does not contain '$2': $1"
}

assert_not_contains() { # TEXT NEEDLE [WHAT]
    [[ $1 != *"$2"* ]] || fail "${3:-output} contains '$2': $1"
}

# The comm of a live (non-zombie) process, or nothing.
proc_comm() {
    local comm state
    { comm=$(<"/proc/$1/comm"); } 2>/dev/null || return 0
    state=$(proc_state "$1")
    [[ $state == Z || $state == X || -z $state ]] || printf '%s' "$comm"
}

proc_state() { # one letter from /proc/PID/stat, empty when the process is gone
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
    line=${line##*) }
    printf '%s' "${line%% *}"
}

is_running() { # alive and not a zombie
    local s
    s=$(proc_state "$1")
    [[ -n $s && $s != Z && $s != X ]]
}

# Waits until none of the PIDs runs any more (a zombie counts as gone). SIGKILL takes effect
# asynchronously, so a process just killed may still show up for a moment.
wait_gone() { # PID...
    local p deadline=$((SECONDS + 5))
    for p in "$@"; do
        while is_running "$p"; do
            ((SECONDS < deadline)) || fail "pid $p still runs 5 s after it should have died"
            sleep 0.05
        done
    done
}

# Remember PID (and its comm, so a PID reused by someone else is never killed).
track() {
    local pid=$1 comm=${2:-}
    [[ -n $comm ]] || comm=$(proc_comm "$pid")
    echo "$pid $comm" >>"$TRACK_FILE"
}

# Every process of the tree rooted at PID, children first (from /proc/*/task/*/children).
descendants() {
    local pid=$1 t c
    for t in /proc/"$pid"/task/*; do
        for c in $(cat "$t/children" 2>/dev/null); do
            descendants "$c"
            echo "$c"
        done
    done
}

# Every thread id of every task of the tree rooted at PID.
tree_ids() {
    local pid=$1 p t
    for p in $(descendants "$pid") "$pid"; do
        for t in /proc/"$p"/task/*; do
            if [[ -e $t ]]; then echo "${t##*/}"; fi
        done
    done
}

kill_tree() { # PID: kill -9 the tree; the root is stopped first so it forks nothing new
    local pid=$1 p
    kill -STOP "$pid" 2>/dev/null || true
    for p in $(descendants "$pid") "$pid"; do
        kill -9 "$p" 2>/dev/null || true
    done
}

kill_tracked() {
    local pid comm
    while read -r pid comm; do
        [[ -n $pid ]] || continue
        # Only what still carries the comm we saw: after a restore the same PID comes back with
        # the same comm; a stranger that reused the PID does not.
        if [[ -z $comm || $(proc_comm "$pid") == "$comm" ]]; then kill_tree "$pid"; fi
    done <"$TRACK_FILE"
}

cleanup() {
    local rc=$?
    kill_tracked
    if [[ $rc -eq 0 || -z ${CR_TEST_KEEP:-} ]]; then rm -rf "$T"; else log "kept $T"; fi
    exit "$rc"
}
trap cleanup EXIT

# Who keeps PID busy: the task itself, or any process using it as process group or session id
# (a zombie included). Prints one "PID(role)" per holder; nothing when the PID is free.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; } # T0 T1: seconds between

pid_holders() {
    local want=$1 f line rest
    local -a fields
    [[ -e /proc/$want ]] && echo "$want(task, state $(proc_state "$want"))"
    for f in /proc/[0-9]*/stat; do
        line=
        { read -r line <"$f"; } 2>/dev/null || continue
        rest=${line##*) }
        read -r -a fields <<<"$rest"
        # fields: state ppid pgrp session ...
        if [[ ${fields[2]} == "$want" || ${fields[3]} == "$want" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}(pgrp ${fields[2]} sid ${fields[3]} state ${fields[0]})"
        fi
    done
}

# Waits until every PID given is free in all three roles (init here reaps orphans 1-2 s late).
wait_pid_free() { # PID... [--timeout SECONDS]
    local timeout=10 pids=() p holders deadline
    while [[ $# -gt 0 ]]; do
        if [[ $1 == --timeout ]]; then timeout=$2; shift 2; else pids+=("$1"); shift; fi
    done
    deadline=$((SECONDS + timeout))
    for p in "${pids[@]}"; do
        while holders=$(pid_holders "$p") && [[ -n $holders ]]; do
            ((SECONDS < deadline)) || fail "pid $p still in use after ${timeout}s: $holders"
            sleep 0.1
        done
    done
}

# wait_pid_free for hundreds of ids: one pass over /proc per round instead of one per id. An id
# is busy while a task has it as its pid or tid, or a process as its process group or session.
# (cat fails when a task vanishes under it: that is no error here.)
wait_ids_free() { # ID...
    local deadline=$((SECONDS + 20)) busy id
    printf '%s\n' "$@" | sort -u >"$T/.want"
    while :; do
        busy=$({
            { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{ r = $0; sub(/.*\) /, "", r); split(r, f, " "); print $1; print f[3]; print f[4] }'
            for id in "$@"; do if [[ -e /proc/$id ]]; then echo "$id"; fi; done
        } | sort -u | comm -12 - "$T/.want")
        [[ -n $busy ]] || return 0
        ((SECONDS < deadline)) || fail "ids still in use 20 s after the dump: $(for id in $busy; do pid_holders "$id"; done | tr '\n' ' ')"
        sleep 0.1
    done
}

wait_file() { # PATH [TIMEOUT]
    local deadline=$((SECONDS + ${2:-30}))
    until [[ -e $1 ]]; do
        ((SECONDS < deadline)) || fail "$1 did not appear within ${2:-30}s"
        sleep 0.05
    done
}

# Runs cr with a time limit; sets CR_RC, CR_OUT, CR_ERR and never trips set -e.
cr_capture() {
    local rc=0
    timeout -k 5 180 "$CR" "$@" >"$T/.cr.out" 2>"$T/.cr.err" || rc=$?
    CR_RC=$rc
    CR_OUT=$(<"$T/.cr.out")
    CR_ERR=$(<"$T/.cr.err")
}

# Checks a failed cr command: non-zero exit and an error line "cr SUB: ..." containing NEEDLEs.
# Sets CR_ERR_LINE to that line.
expect_cr_error() { # SUB NEEDLE...
    local sub=$1 needle
    shift
    [[ $CR_RC -ne 0 ]] || fail "cr $sub succeeded, expected an error (stderr: $CR_ERR)"
    ((CR_RC != 124 && CR_RC != 137)) || fail "cr $sub timed out"
    CR_ERR_LINE=$(grep -m1 "^cr $sub: " <<<"$CR_ERR" || true)
    [[ -n $CR_ERR_LINE ]] || fail "cr $sub: no line starting with 'cr $sub: ' on stderr: $CR_ERR"
    log "as expected: $CR_ERR_LINE"
    for needle in "$@"; do assert_contains "$CR_ERR_LINE" "$needle" "error of cr $sub"; done
}

# Does TEXT name NUMBER as a number of its own (not as part of 1234)?
names_number() { # TEXT NUMBER
    [[ $1 =~ (^|[^0-9])$2([^0-9]|$) ]]
}

# Untraced and not stopped: every thread of the tree (TracerPid 0, state not t/T).
assert_untraced() { # PID
    local id status tracer state
    for id in $(tree_ids "$1"); do
        status=$(cat "/proc/$id/status" 2>/dev/null) || fail "thread $id of $1 is gone"
        tracer=$(sed -n 's/^TracerPid:[[:space:]]*//p' <<<"$status")
        state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' <<<"$status")
        [[ $tracer == 0 ]] || fail "thread $id of $1 is still traced by $tracer"
        [[ $state != t && $state != T ]] || fail "thread $id of $1 is stopped (state $state)"
    done
}

# sha256 of every file of an image directory, except the logs cr appends to.
image_digest() { # DIR
    (cd "$1" && find . -type f ! -name dump.log ! -name restore.log -print0 | sort -z |
        xargs -0 -r sha256sum)
}

# Flips every bit of the byte at the middle of FILE.
flip_byte() { # FILE
    local size off byte
    size=$(stat -c %s "$1")
    ((size > 0)) || fail "cannot flip a byte of empty $1"
    off=$((size / 2))
    byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
    printf "\\$(printf '%03o' $((byte ^ 0xff)))" |
        dd of="$1" bs=1 seek="$off" count=1 conv=notrunc status=none
}

line_count() { # FILE
    local n
    n=$(wc -l <"$1" 2>/dev/null) || n=0
    echo "$n"
}

# Waits until FILE has at least N lines.
wait_lines() { # FILE N TIMEOUT
    local deadline=$((SECONDS + $3))
    until (($(line_count "$1") >= $2)); do
        ((SECONDS < deadline)) || fail "$1 has $(line_count "$1") lines after ${3}s, expected at least $2"
        sleep 0.1
    done
}

# A shell loop that prints a timestamp per second, started the way a user would: setsid, so it
# is its own session and process group. Prints the loop's PID. Its log is appended to, so a
# process restored from an older image writes after what the original wrote since.
start_loop() { # DIR
    local dir=$1 pid sid
    mkdir -p "$dir"
    printf '#!/bin/bash\nwhile :; do sleep 1; date +%%s; done\n' >"$dir/loop.sh"
    chmod +x "$dir/loop.sh"
    (cd "$dir" && exec setsid ./loop.sh </dev/null >>loop.log 2>&1) &
    pid=$!
    track "$pid" loop.sh
    # setsid runs the script in place when it is not a group leader (no job control here).
    for _ in $(seq 50); do
        [[ $(proc_comm "$pid") == loop.sh ]] && break
        sleep 0.02
    done
    sid=$(awk '{ sub(/.*\) /, ""); print $4 }' "/proc/$pid/stat" 2>/dev/null || true)
    [[ $sid == "$pid" ]] || fail "loop $pid is not a session leader (sid '$sid')"
    echo "$pid"
}

# Starts a workload detached through `cr run`; prints its PID.
# Dumps the tree of PID into IMG and waits until every id of the tree is free again. Sets ids
# (in the caller's scope, local there or not) to those ids, for later waits.
dump_and_free() { # PID IMG
    ids=$(tree_ids "$1")
    cr_capture dump -t "$1" -D "$2"
    [[ $CR_RC -eq 0 ]] || fail "cr dump -t $1 failed ($CR_RC): $CR_ERR"
    wait_gone $ids
    wait_pid_free $ids
}

# A restore without -d (cr's exit status is then the workload's) in three steps, for tests that
# tell the workload to go their own way: restore_start runs cr restore -D IMG in the background
# under a TIMEOUT and sets rpid (in the caller's scope); restore_finish waits for it and requires
# the workload's verdict: "NAME: ok" in LOG and "ok" in WL/result.
restore_start() { # IMG TIMEOUT
    timeout -k 5 "$2" "$CR" restore -D "$1" >"$T/restore.out" 2>"$T/restore.err" &
    rpid=$!
    track "$rpid" timeout
}
restore_finish() { # NAME WL IMG LOG TIMEOUT
    local name=$1 wl=$2 img=$3 logf=$4 rc=0
    wait "$rpid" || rc=$?
    ((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within $5 s"
    [[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
    grep -q "^$name: ok\$" "$logf" || fail "no '$name: ok' in the workload's log"
    [[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
}

# Tells the workload in WL to check itself once cr restore has let every thread go: a workload
# that checks and exits at once must not race the release of its own threads.
release_then_go() { # IMG WL
    local deadline=$((SECONDS + 60))
    until grep -q 'tree running again' "$1/restore.log" 2>/dev/null; do
        ((SECONDS < deadline)) || break
        sleep 0.05
    done
    touch "$2/go"
}

# The common case: restore, tell the workload to check itself at once, require its verdict.
restore_and_check() { # NAME WL IMG LOG [TIMEOUT]
    local rpid timeout=${5:-60}
    restore_start "$3" "$timeout"
    touch "$2/go"
    restore_finish "$1" "$2" "$3" "$4" "$timeout"
}

# cr's own restore time (from its start until the tree runs), from IMG/restore.log.
restore_seconds() { # IMG
    local s
    s=$(sed -n 's/.*tree running again, root pid [0-9]*, \([0-9.]*\) s$/\1 s/p' "$1/restore.log")
    echo "${s:-unknown (no 'tree running again' in restore.log)}"
}

cr_run() { # LOG CMD ARGS...
    local logf=$1 pid
    shift
    cr_capture run --log "$logf" -- "$@"
    [[ $CR_RC -eq 0 ]] || fail "cr run $* failed ($CR_RC): $CR_ERR"
    pid=${CR_OUT//[[:space:]]/}
    [[ $pid =~ ^[0-9]+$ ]] || fail "cr run printed '$CR_OUT', expected a PID"
    track "$pid" "$(basename "$1" | cut -c1-15)"
    echo "$pid"
}

# What a workload that counts on request (wl_unix_socket: "COUNT ERRORS", wl_unsupported:
# "COUNT") writes to DIR/count once DIR/req appears.
request_count() { # DIR
    rm -f "$1/count"
    touch "$1/req"
    wait_file "$1/count" 10
    cat "$1/count"
}

# Runs a test case in a subshell: a failure is counted and reported, the next case runs.
# With CASE_CLEANUP=0 the processes a case started live on into the next one.
FAILED_CASES=()
CASE_CLEANUP=1
run_case() { # NAME FUNCTION
    local rc=0
    log "case $1"
    # Not "(...) || rc=$?": set -e would be off inside the subshell.
    set +e
    (set -e; "$2")
    rc=$?
    set -e
    ((CASE_CLEANUP == 0)) || kill_tracked
    if [[ $rc -eq 0 ]]; then log "PASS $1"; else log "FAIL $1"; FAILED_CASES+=("$1"); fi
}

finish_cases() {
    if [[ ${#FAILED_CASES[@]} -gt 0 ]]; then
        log "failed: ${FAILED_CASES[*]}"
        exit 1
    fi
    log "all cases passed"
}
