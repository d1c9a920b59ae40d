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

restore_start "$img" 60
# The restore stubs are cr until their transplant: wait for the workload's own executable.
for _ in $(seq 200); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [[ $exe == "$T/bin/wl_shared (deleted)" ]] && break
    sleep 0.05
done
[[ $exe == "$T/bin/wl_shared (deleted)" ]] || fail "restored executable of $pid reads '$exe'"
touch "$wl/go"
restore_finish wl_shared "$wl" "$img" "$T/wl.log" 60
log "ok: shared and deleted-file mappings restored, still shared"
