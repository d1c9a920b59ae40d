#!/bin/bash
# Shared memory: wl_shared (shared anonymous and /dev/zero memory written by parent and child, a
# page only the shared object still holds, mappings of files deleted while mapped, with and
# without a descriptor left) is dumped and restored and checks itself. It runs from a copy of its
# executable that is deleted before the dump: its text and data are mappings of a deleted file,
# and the restored process names the same deleted file as its executable.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl" "$T/bin"
cp "$WL_DIR/wl_shared" "$T/bin/wl_shared"
pid=$(cr_run "$T/wl.log" "$T/bin/wl_shared" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
rm "$T/bin/wl_shared"
exe=$(readlink "/proc/$pid/exe")
[[ $exe == "$T/bin/wl_shared (deleted)" ]] || fail "executable of $pid reads '$exe'"
dump_and_free "$pid" "$img"

timeout -k 5 60 "$CR" restore -D "$img" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
# The restore stubs are cr until their transplant: wait for the workload's own executable.
for _ in $(seq 200); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [[ $exe == "$T/bin/wl_shared (deleted)" ]] && break
    sleep 0.05
done
[[ $exe == "$T/bin/wl_shared (deleted)" ]] || fail "restored executable of $pid reads '$exe'"
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
((rc != 124 && rc != 137)) || fail "cr restore -D $img did not finish within 60 s"
[[ $rc -eq 0 ]] || fail "cr restore -D $img exited $rc (the workload's status); stderr: $(<"$T/restore.err")"
grep -q '^wl_shared: ok$' "$T/wl.log" || fail "no 'wl_shared: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
log "ok: shared and deleted-file mappings restored, still shared"
