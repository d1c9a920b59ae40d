#!/bin/bash
# Resources no handler restores make the dump fail before anything is written, with one line
# naming the process and the resource, and the process keeps running untraced and unchanged:
# a System V shared memory segment (it would come back as plain shared memory without its key
# and id) and a namespace other than cr's (the process would come back in cr's own).
source "$(dirname "$0")/lib.sh"

expect_refused_and_running() { # PID IMG NEEDLE...
    local pid=$1 img=$2
    shift 2
    cr_capture dump -t "$pid" -D "$img"
    expect_cr_error dump "$@"
    [[ ! -e $img/manifest.cr ]] || fail "a refused dump left a manifest in $img"
    is_running "$pid" || fail "pid $pid is gone after the refused dump"
    assert_untraced "$pid"
}

case_sysv_shm() {
    local wl=$T/shm pid c0 c1
    mkdir -p "$wl"
    pid=$(cr_run "$T/shm.log" "$WL_DIR/wl_unsupported" "$wl" sysv-shm)
    wait_file "$wl/ready" 30
    c0=$(request_count "$wl")
    expect_refused_and_running "$pid" "$T/shm-img" "pid $pid: mapping" "System V shared memory" "not supported"
    sleep 0.3
    c1=$(request_count "$wl")
    ((c1 > c0)) || fail "the counter in the segment does not advance after the refused dump: $c0 $c1"
}

case_foreign_namespace() {
    local pid
    command -v unshare >/dev/null || fail "unshare (util-linux) is missing"
    pid=$(cr_run "$T/ns.log" unshare --uts sleep 600)
    for _ in $(seq 50); do [[ $(proc_comm "$pid") == sleep ]] && break; sleep 0.1; done
    [[ $(readlink "/proc/$pid/ns/uts") != $(readlink /proc/self/ns/uts) ]] || fail "pid $pid is in cr's uts namespace"
    expect_refused_and_running "$pid" "$T/ns-img" "pid $pid: runs in a uts namespace other than cr's" "task:ns:uts"
}

run_case sysv_shm case_sysv_shm
run_case foreign_namespace case_foreign_namespace
finish_cases
