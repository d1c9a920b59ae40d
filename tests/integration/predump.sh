#!/bin/bash
# Incremental dumps: a workload rewriting its memory all the time goes through pre-dump,
# pre-dump, dump and restore, then checks every byte itself. A pre-dump image does not restore,
# a corrupted page file anywhere in the chain and a missing image are clear errors.
source "$(dirname "$0")/lib.sh"

w=$T/w
d1=$T/d1
d2=$T/d2
fin=$T/final
mkdir -p "$w"
SHOW_ON_FAIL=("$T/wl.log" "$d1/dump.log" "$d2/dump.log" "$fin/dump.log" "$fin/restore.log")

pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_predump" "$w" 32 10)
wait_file "$w/ready" 60

uffds() { # PID: how many userfaultfds the task holds
    local n=0 f
    for f in /proc/"$1"/fd/*; do
        [[ $(readlink "$f" 2>/dev/null) == "anon_inode:[userfaultfd]" ]] && n=$((n + 1))
    done
    echo "$n"
}

cr_capture pre-dump -t "$pid" -D "$d1"
[[ $CR_RC -eq 0 ]] || fail "cr pre-dump -t $pid failed ($CR_RC): $CR_ERR"
is_running "$pid" || fail "pid $pid is gone after the pre-dump"
assert_untraced "$pid"
(($(uffds "$pid") == 1)) || fail "pid $pid holds $(uffds "$pid") userfaultfds after the pre-dump, expected the tracker"
sleep 1
cr_capture pre-dump -t "$pid" -D "$d2" --prev-images-dir "$d1"
[[ $CR_RC -eq 0 ]] || fail "second cr pre-dump failed ($CR_RC): $CR_ERR"
sleep 1
cr_capture dump -t "$pid" -D "$fin" --prev-images-dir "$d2"
[[ $CR_RC -eq 0 ]] || fail "cr dump --prev-images-dir failed ($CR_RC): $CR_ERR"
wait_pid_free "$pid"

full=$(stat -c %s "$d1/pages-$pid.img")
last=$(stat -c %s "$fin/pages-$pid.img")
log "page files: first pre-dump $full bytes, final dump $last bytes"
((last * 2 < full)) || fail "the final dump wrote $last bytes of pages, not less than half of the first pre-dump's $full"

cr_capture restore -D "$d1" -d
expect_cr_error restore "made by cr pre-dump" "$d1"

cr_capture restore -D "$fin" -d
[[ $CR_RC -eq 0 ]] || fail "cr restore -D $fin failed ($CR_RC): $CR_ERR"
is_running "$pid" || fail "pid $pid does not run after the restore"
(($(uffds "$pid") == 0)) || fail "restored pid $pid holds a userfaultfd: the tracker was not left out"
rm -f "$w/result"
touch "$w/check"
wait_file "$w/result" 60
result=$(<"$w/result")
[[ $result == ok* ]] || fail "workload after restore: $result"
log "workload after restore: $result"
kill_tree "$pid"
wait_pid_free "$pid"

flip_byte "$d1/pages-$pid.img"
cr_capture restore -D "$fin" -d
expect_cr_error restore "d1" "pages-$pid.img" "crc32c mismatch"
is_running "$pid" && fail "pid $pid runs although its image is corrupted"
wait_pid_free "$pid"

mv "$d2" "$d2.moved"
cr_capture restore -D "$fin" -d
expect_cr_error restore "chain of images is broken" "d2"
log "ok: pre-dump, pre-dump, dump, restore; corruption and a broken chain refused"
