#!/bin/bash
# memfd files: wl_memfd (contents with a hole, seals, mode, two descriptions and a shared
# mapping of one memfd; a memfd only mapped, shared with a child; a description shared by parent
# and child) is dumped and restored and checks itself.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_memfd" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
ids=$(tree_ids "$pid")
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
wait_gone $ids
wait_pid_free $ids
compgen -G "$img/memfd-*.img" >/dev/null || fail "no memfd contents in $img: $(ls "$img")"

timeout -k 5 60 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 60 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_memfd: ok$' "$T/wl.log" || fail "no 'wl_memfd: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
log "ok: memfds restored with contents, seals and mappings"
