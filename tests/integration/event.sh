#!/bin/bash
# Event descriptors: wl_event (eventfds, a signalfd with a pending signal, relative, absolute,
# expired and periodic timerfds, an epoll with a nested epoll, an inotify with a gap in its watch
# descriptors) is dumped and restored and checks itself. An epoll registration cr cannot name in
# the restored task, and a pidfd, fail the dump with a clear error and the target runs on.
source "$(dirname "$0")/lib.sh"

case_roundtrip() {
    local wl=$T/wl img=$T/img pid ids
    mkdir -p "$wl"
    pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_event" "$wl")
    SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
    wait_file "$wl/ready" 30
    dump_and_free "$pid" "$img"

    restore_and_check wl_event "$wl" "$img" "$T/wl.log"
}

# A dump that must fail naming pid, fd and what is wrong; the target runs on, untraced.
refused_dump() { # KIND NEEDLE...
    local kind=$1 wl=$T/bad-$1 pid
    shift
    mkdir -p "$wl"
    pid=$(cr_run "$T/bad-$kind.log" "$WL_DIR/wl_event" --unsupported "$kind" "$wl")
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

case_epoll_stale() { refused_dump epoll-stale "eventpoll" "no longer at fd" "not supported"; }
case_pidfd() { refused_dump pidfd "pidfd" "no handler supports it"; }

run_case roundtrip case_roundtrip
run_case epoll_stale case_epoll_stale
run_case pidfd case_pidfd
finish_cases
