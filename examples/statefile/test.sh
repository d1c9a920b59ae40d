#!/bin/bash
# Round trip of example.statefile with an installed cr: the application publishes a token in the
# file its environment names; cr dumps it; the file and its directory disappear, as on a machine
# where they never existed; cr restores, and the application checks that its file says what it
# published. On the way the handler's section is decoded to JSON through its installed schema.
#
# Environment: CR_BIN (cr), STATEFILE_APP (statefile_app); CR_PLUGIN_PATH and CR_SCHEMA_PATH
# when the handler is not installed yet. Run as root.
set -euo pipefail

CR=${CR_BIN:?CR_BIN must name the cr binary}
APP=${STATEFILE_APP:?STATEFILE_APP must name statefile_app}
T=$(mktemp -d /tmp/cr-statefile.XXXXXX)
PID=

log() { echo "statefile test: $*" >&2; }
fail() {
    log "FAIL: $*"
    for f in "$T/img/dump.log" "$T/img/restore.log" "$T/app.log"; do
        [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
# Only the process we started, recognised by its name, is ever killed.
cleanup() {
    if [[ -n $PID && $(cat "/proc/$PID/comm" 2>/dev/null) == statefile_app ]]; then kill -9 "$PID" || true; fi
    rm -rf "$T"
}
trap cleanup EXIT

wait_for() { # SECONDS COMMAND...: until COMMAND succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
# Gone and reaped: a zombie still holds its PID (and the session and group it leads).
pid_free() { [[ ! -e /proc/$1 ]] && ! grep -qs -E "^[0-9]+ \(.*\) . [0-9]+ ($1 [0-9]+|[0-9]+ $1) " /proc/[0-9]*/stat; }

state=$T/run/app/state
mkdir -p "$T/run/app" "$T/app"
PID=$(EXAMPLE_STATE_FILE=$state "$CR" run --log "$T/app.log" -- "$APP" "$T/app")
[[ $PID =~ ^[0-9]+$ ]] || fail "cr run printed '$PID'"
wait_for 10 test -e "$T/app/ready" || fail "statefile_app did not get ready"
published=$(<"$state")
log "pid $PID published '$published' in $state"

"$CR" plugins | grep -q '^example.statefile 1\.' || fail "cr plugins does not list example.statefile: $("$CR" plugins)"
"$CR" dump -t "$PID" -D "$T/img" || fail "cr dump failed"
grep -q "example.statefile.*$state" "$T/img/dump.log" || fail "dump.log says nothing of $state"
wait_for 15 pid_free "$PID" || fail "pid $PID still in use 15 s after the dump"

json=$("$CR" decode "$T/img/example.statefile.cr") || fail "cr decode example.statefile.cr failed"
grep -q "\"path\": \"$state\"" <<<"$json" || fail "decoded section has no path $state: $json"
grep -q '"variable": "EXAMPLE_STATE_FILE"' <<<"$json" || fail "decoded section names no variable: $json"
grep -q '"mode": 416' <<<"$json" || fail "decoded section has not mode 0640: $json"
"$CR" inspect "$T/img" | grep -q 'example.statefile.cr *example.statefile *1.0.0 *EXSF' ||
    fail "cr inspect lists no example.statefile.cr section: $("$CR" inspect "$T/img")"

rm -rf "$T/run"
rc=0
"$CR" restore -D "$T/img" >"$T/restore.out" 2>&1 &
restorer=$!
wait_for 30 test -e "$state" || fail "restore did not put $state back"
touch "$T/app/go"
wait "$restorer" || rc=$?
[[ $rc -eq 0 ]] || fail "cr restore exited $rc: $(<"$T/restore.out"); result: $(cat "$T/app/result" 2>/dev/null)"
[[ $(<"$T/app/result") == ok ]] || fail "statefile_app says: $(<"$T/app/result")"
[[ $(<"$state") == "$published" ]] || fail "$state says '$(<"$state")', published '$published'"
grep -q "example.statefile.*put back" "$T/img/restore.log" || fail "restore.log says nothing of putting $state back"
PID=
log "ok: $state put back, statefile_app checked itself"
