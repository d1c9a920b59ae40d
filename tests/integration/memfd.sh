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
dump_and_free "$pid" "$img"
compgen -G "$img/memfd-*.img" >/dev/null || fail "no memfd contents in $img: $(ls "$img")"

restore_and_check wl_memfd "$wl" "$img" "$T/wl.log"
log "ok: memfds restored with contents, seals and mappings"
