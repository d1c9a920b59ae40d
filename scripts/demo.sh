#!/bin/bash
# cr demo: a shell loop printing the date every second is dumped (and dies), then restored
# detached under its old PID, and goes on printing. Usage: sudo scripts/demo.sh [BUILD_DIR]
set -euo pipefail

build=${1:-build}
cr=$(realpath "$build")/bin/cr
[[ -x $cr ]] || { echo "demo: $cr not found; build first (see README.md)" >&2; exit 1; }
[[ $EUID -eq 0 ]] || { echo "demo: run as root (restoring a PID needs CAP_CHECKPOINT_RESTORE)" >&2; exit 1; }

dir=$(mktemp -d /tmp/cr-demo.XXXXXX)
pid=

step() { printf '\n== %s\n' "$*"; }
die() { echo "demo: FAILED: $*" >&2; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
running() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*[ZX]' "/proc/$1/status" 2>/dev/null; }

# Kills the loop and its children by PID, but only while that PID is still our loop.
kill_loop() {
    [[ -n $pid ]] && running "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == loop.sh ]] || return 0
    kill -STOP "$pid" 2>/dev/null || true
    local c
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do kill -9 "$c" 2>/dev/null || true; done
    kill -9 "$pid" 2>/dev/null || true
}
trap 'rc=$?; kill_loop; rm -rf "$dir"; exit $rc' EXIT

# A PID stays taken while any process, a zombie included, uses it as its PID, process group or
# session, and init reaps orphans a little late: wait until nobody holds it.
pid_busy() {
    local f line
    local -a x
    [[ -e /proc/$1 ]] && return 0
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -r -a x <<<"${line##*) }"
        [[ ${x[2]} == "$1" || ${x[3]} == "$1" ]] && return 0
    done
    return 1
}

cd "$dir"
printf '#!/bin/bash\nwhile :; do sleep 1; date; done\n' >loop.sh
chmod +x loop.sh

step "start a shell loop in its own session"
setsid ./loop.sh </dev/null &>loop.log &
pid=$!
disown "$pid" # its death at the dump is the point, not news
sleep 3
echo "loop.sh runs as pid $pid; its log:"
cat loop.log
[[ -s loop.log ]] || die "the loop wrote nothing"

step "cr dump -t $pid -D img"
t0=$(now_ms)
"$cr" dump -t "$pid" -D img || die "cr dump failed"
dump_ms=$(($(now_ms) - t0))
ls -l img
for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
running "$pid" && die "pid $pid still runs after the dump"
echo "pid $pid is gone"

step "wait until pid $pid is free"
for _ in $(seq 100); do pid_busy "$pid" || break; sleep 0.1; done
pid_busy "$pid" && die "pid $pid is still in use after 10 s"
echo "pid $pid is free"

step "cr restore -D img -d"
lines=$(wc -l <loop.log)
t0=$(now_ms)
"$cr" restore -D img -d || die "cr restore failed"
restore_ms=$(($(now_ms) - t0))
ps -o pid,sid,cmd -p "$pid" || die "pid $pid does not run after the restore"

step "the restored loop goes on"
sleep 3
cat loop.log
new=$(($(wc -l <loop.log) - lines))
echo "$new new line(s) in 3 s"
((new >= 2)) || die "expected at least 2 new lines after the restore, got $new"

step "times"
echo "dump:    ${dump_ms} ms"
echo "restore: ${restore_ms} ms"

kill_loop
echo
echo "demo: ok"
