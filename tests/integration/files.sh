#!/bin/bash
# Regular files: wl_files (several descriptions of one file through several paths, one shared by
# parent and child, O_PATH and directory descriptors, files deleted while open, flock, OFD and
# POSIX locks) is dumped and restored and checks itself. Between the dump and the restore, a
# changed file and a missing file each stop the restore with a clear error and lose nothing.
# A dump with --leave-running disturbs nothing. Things cr cannot save (a lease, a removed
# directory) fail the dump and the target runs on.
source "$(dirname "$0")/lib.sh"

# Restores IMG expecting an error that names NEEDLEs; no process of the image may be left.
refused_restore() { # IMG PID NEEDLE...
    local img=$1 pid=$2
    shift 2
    cr_capture restore -D "$img" -d
    if is_running "$pid"; then track "$pid" wl_files; fi
    expect_cr_error restore "$@"
    ! is_running "$pid" || fail "pid $pid runs after the refused restore"
}

case_roundtrip() {
    local wl=$T/wl img=$T/img pid ids
    mkdir -p "$wl"
    pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_files" "$wl")
    SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
    wait_file "$wl/ready" 30
    dump_and_free "$pid" "$img"
    compgen -G "$img/deleted-*.img" >/dev/null || fail "no deleted-file contents in $img: $(ls "$img")"

    # data.bin grows after the dump: refused, then put back as it was (same inode and mtime).
    cp -p "$wl/data.bin" "$T/data.bak"
    echo x >>"$wl/data.bin"
    refused_restore "$img" "$pid" "$wl/data.bin" "changed since the dump" "--skip-file-check"
    cp -p "$T/data.bak" "$wl/data.bin"
    # hard.bin is gone: refused, then moved back.
    mv "$wl/hard.bin" "$T/hard.moved"
    refused_restore "$img" "$pid" "$wl/hard.bin" "no longer exists"
    mv "$T/hard.moved" "$wl/hard.bin"
    wait_pid_free $ids

    restore_and_check wl_files "$wl" "$img" "$T/wl.log"
}

# A dump that leaves the tree running changes nothing it holds: positions, deleted files (read
# through descriptions of cr's own), locks.
case_leave_running() {
    local wl=$T/lr pid
    mkdir -p "$wl"
    pid=$(cr_run "$T/lr.log" "$WL_DIR/wl_files" "$wl")
    wait_file "$wl/ready" 30
    cr_capture dump --leave-running -t "$pid" -D "$T/lr-img"
    [[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid failed ($CR_RC): $CR_ERR"
    assert_untraced "$pid"
    touch "$wl/go"
    wait_file "$wl/result" 30
    [[ $(<"$wl/result") == ok ]] || fail "after cr dump --leave-running the workload says: $(<"$T/lr.log")"
}

# A dump that must fail naming pid, fd and what is wrong; the target runs on, untraced.
refused_dump() { # KIND NEEDLE...
    local kind=$1 wl=$T/bad-$1 pid
    shift
    mkdir -p "$wl"
    pid=$(cr_run "$T/bad-$kind.log" "$WL_DIR/wl_files" --unsupported "$kind" "$wl")
    wait_file "$wl/ready" 30
    cr_capture dump -t "$pid" -D "$T/bad-$kind-img"
    expect_cr_error dump "pid $pid fd " "$@"
    is_running "$pid" || fail "pid $pid is gone after the refused dump"
    assert_untraced "$pid"
    [[ ! -e $T/bad-$kind-img/manifest.cr ]] || fail "the refused dump left a manifest"
    touch "$wl/go"
    wait_file "$wl/result" 10
    [[ $(<"$wl/result") == ok ]] || fail "after the refused dump the workload says: $(<"$T/bad-$kind.log")"
}

case_lease() { refused_dump lease "lease.dat" "LEASE" "not supported"; }
case_deleted_dir() { refused_dump deleted-dir "gone (deleted)" "deleted directory is not supported"; }

run_case roundtrip case_roundtrip
run_case leave_running case_leave_running
run_case lease case_lease
run_case deleted_dir case_deleted_dir
finish_cases
