#!/bin/bash
# A handler failing in any dump phase must leave the target running, untraced and unchanged.
# The test-only handler cr.test.fault (found through CR_PLUGIN_PATH) fails the phase named by
# CR_TEST_FAULT_PHASE. One wl_mixed takes every failed dump in turn and checks itself at the end;
# dump_fd goes to the handler claiming the fd, so that phase is driven through a process holding
# the raw netlink socket the fault handler claims.
source "$(dirname "$0")/lib.sh"

[[ -d ${CR_FAULT_HANDLER_DIR:-} ]] || fail "CR_FAULT_HANDLER_DIR does not name the fault handler's directory"
export CR_PLUGIN_PATH=$CR_FAULT_HANDLER_DIR
unset CR_TEST_FAULT_PHASE
CASE_CLEANUP=0 # the same wl_mixed goes through every case

# The running wl_mixed: "PID DIR" in $T/current (cases run in subshells).
current_mixed() {
    local pid= dir= n=0
    if [[ -f $T/current ]]; then read -r pid dir <"$T/current"; fi
    if [[ -n $pid ]] && [[ $(proc_comm "$pid") == wl_mixed ]]; then
        echo "$pid $dir"
        return
    fi
    while [[ -e $T/wl-$n ]]; do n=$((n + 1)); done
    dir=$T/wl-$n
    mkdir -p "$dir"
    pid=$(cr_run "$dir.log" "$WL_DIR/wl_mixed" "$dir")
    wait_file "$dir/ready" 30
    echo "$pid $dir" >"$T/current"
    echo "$pid $dir"
}

case_loaded() {
    cr_capture plugins
    [[ $CR_RC -eq 0 ]] || fail "cr plugins with CR_PLUGIN_PATH=$CR_PLUGIN_PATH failed ($CR_RC): $CR_ERR"
    assert_contains "$CR_OUT" cr.test.fault "cr plugins output"
}

# Without a fault to inject, the handler does not get in the way.
case_control() {
    local out pid dir
    out=$(current_mixed)
    read -r pid dir <<<"$out"
    cr_capture dump -t "$pid" -D "$T/img-control" --leave-running
    [[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid with no fault failed ($CR_RC): $CR_ERR"
    is_running "$pid" || fail "wl_mixed $pid is gone after dump --leave-running"
    assert_untraced "$pid"
}

fault_in() { # PHASE
    local phase=$1 out pid dir ids img=$T/img-$1 opts=()
    out=$(current_mixed)
    read -r pid dir <<<"$out"
    SHOW_ON_FAIL=("$dir.log" "$img/dump.log")
    ids=$(tree_ids "$pid")
    [[ $phase == post_dump ]] && opts=(--leave-running)
    CR_TEST_FAULT_PHASE=$phase cr_capture dump -t "$pid" -D "$img" "${opts[@]}"
    expect_cr_error dump "fault injected in $phase"
    if [[ $phase != post_dump && -e $img/manifest.cr ]]; then fail "a dump failed in $phase left $img/manifest.cr"; fi
    is_running "$pid" || fail "wl_mixed $pid is gone after a fault in $phase"
    [[ $(tree_ids "$pid" | sort -n | tr '\n' ' ') == "$(sort -n <<<"$ids" | tr '\n' ' ')" ]] ||
        fail "the tree of $pid changed after a fault in $phase: $(echo $ids) -> $(echo $(tree_ids "$pid"))"
    assert_untraced "$pid"
}

case_pre_dump() { fault_in pre_dump; }
case_dump_task() { fault_in dump_task; }
case_dump_finish() { fault_in dump_finish; }
case_post_dump() { fault_in post_dump; }

case_dump_fd() {
    local wl=$T/sock pid a b c out
    mkdir -p "$wl"
    pid=$(cr_run "$T/sock.log" "$WL_DIR/wl_unix_socket" "$wl" netlink)
    wait_file "$wl/ready" 30
    CR_TEST_FAULT_PHASE=dump_fd cr_capture dump -t "$pid" -D "$T/img-dump_fd"
    expect_cr_error dump "fault injected in dump_fd"
    is_running "$pid" || fail "wl_unix_socket $pid is gone after a fault in dump_fd"
    assert_untraced "$pid"
    out=$(request_count "$wl")
    read -r a c <<<"$out"
    sleep 0.3
    out=$(request_count "$wl")
    read -r b c <<<"$out"
    [[ $c == 0 ]] || fail "socketpair lost or mangled $c byte(s) after a fault in dump_fd"
    ((b > a)) || fail "wl_unix_socket's counter does not advance after a fault in dump_fd: $a then $b"
}

# The wl_mixed that took the faults checks every byte of itself.
case_final_check() {
    local pid dir
    [[ -f $T/current ]] || fail "no wl_mixed ran"
    read -r pid dir <"$T/current"
    SHOW_ON_FAIL=("$dir.log")
    is_running "$pid" || fail "wl_mixed $pid is gone"
    touch "$dir/go"
    wait_file "$dir/result" 60
    [[ $(<"$dir/result") == ok ]] || fail "wl_mixed $pid says '$(<"$dir/result")' after the failed dumps"
    grep -q '^wl_mixed: ok$' "$dir.log" || fail "no 'wl_mixed: ok' in $dir.log"
}

run_case loaded case_loaded
run_case control case_control
run_case pre_dump case_pre_dump
run_case dump_task case_dump_task
run_case dump_finish case_dump_finish
run_case post_dump case_post_dump
run_case dump_fd case_dump_fd
run_case final_check case_final_check
finish_cases
