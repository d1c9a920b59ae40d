#!/bin/bash
# Unix sockets (cr.net.unix): wl_unix (stream, datagram and seqpacket pairs with data both ways,
# path and abstract listeners with accepted and pending connections, a bound datagram socket with
# datagrams from three senders, sockets, a file and pipes in flight, credentials, shutdown
# states, a closed peer, shared and dup'd descriptors, buffer sizes, SO_PEEK_OFF, O_NONBLOCK)
# is dumped and restored and checks itself; --leave-running leaves it as it was. Then what cr
# must refuse, each time with the target left running: an eventfd in flight, data sent on a
# connection not yet accepted, a peer outside the dumped tree (and --ext-unix-sk for a datagram
# socket connected to a path outside, which the restore connects again; before that, the same
# image changed to name a peer it does not hold is refused).
source "$(dirname "$0")/lib.sh"

case_round_trip() {
    local wl=$T/wl img=$T/img ids pid rpid
    mkdir -p "$wl"
    pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_unix" "$wl")
    SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
    wait_file "$wl/ready" 30
    dump_and_free "$pid" "$img"

    restore_start "$img" 60
    wait_file "$img/restore.log" 30
    touch "$wl/go"
    restore_finish wl_unix "$wl" "$img" "$T/wl.log" 60
    log "ok: unix sockets restored with their names, peers, queues and options"
}

# --leave-running: the dump reads every queue without taking anything out and puts every option
# it touched back (SO_PEEK_OFF, SO_PASSCRED): the workload finds everything as it was.
case_leave_running() {
    local wl=$T/lr pid
    mkdir -p "$wl"
    pid=$(cr_run "$T/lr.log" "$WL_DIR/wl_unix" "$wl")
    SHOW_ON_FAIL=("$T/lr.log" "$T/lr-img/dump.log")
    wait_file "$wl/ready" 30
    cr_capture dump -t "$pid" -D "$T/lr-img" --leave-running
    [[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid failed ($CR_RC): $CR_ERR"
    is_running "$pid" || fail "pid $pid is gone after dump --leave-running"
    assert_untraced "$pid"
    verdict "$wl"
}

# Dumps PID expecting an error with NEEDLEs; the target must run on, untraced.
refused() { # PID IMG NEEDLE... (extra cr options in DUMP_OPTS)
    local pid=$1 img=$2
    shift 2
    cr_capture dump -t "$pid" -D "$img" "${DUMP_OPTS[@]}"
    expect_cr_error dump "$@"
    is_running "$pid" || fail "pid $pid is gone after the refused dump"
    assert_untraced "$pid"
}

# The workload, still the original process, says whether it kept its state.
verdict() { # DIR
    touch "$1/go"
    wait_file "$1/result" 30
    [[ $(<"$1/result") == ok ]] || fail "the workload says '$(<"$1/result")' after the refused dump"
}

case_inflight_eventfd() {
    local wl=$T/efd pid
    mkdir -p "$wl"
    pid=$(cr_run "$T/efd.log" "$WL_DIR/wl_unix" --unsupported inflight-eventfd "$wl")
    SHOW_ON_FAIL=("$T/efd.log")
    wait_file "$wl/ready" 30
    DUMP_OPTS=()
    refused "$pid" "$T/efd-img" "pid $pid fd" "eventfd" "in flight"
    verdict "$wl"
}

# Data sent on a connection not yet accepted can only be read by accepting it: refused.
case_pending_data() {
    local wl=$T/pend pid
    mkdir -p "$wl"
    pid=$(cr_run "$T/pend.log" "$WL_DIR/wl_unix" --unsupported pending-data "$wl")
    SHOW_ON_FAIL=("$T/pend.log")
    wait_file "$wl/ready" 30
    DUMP_OPTS=()
    refused "$pid" "$T/pend-img" "pid $pid fd" "sent data on a connection $wl/pending.sock has not accepted yet"
    verdict "$wl"
}

case_external_peer() {
    local wl=$T/ext pid child sfd dfd
    mkdir -p "$wl"
    pid=$(cr_run "$T/ext.log" "$WL_DIR/wl_unix" --unsupported external-stream "$wl")
    SHOW_ON_FAIL=("$T/ext.log")
    wait_file "$wl/ready" 30
    wait_file "$wl/child" 30
    read -r child sfd dfd <"$wl/child"
    DUMP_OPTS=()
    refused "$child" "$T/ext-img" "pid $child fd" "outside the dumped tree" "--ext-unix-sk" "pid $pid fd"
    DUMP_OPTS=(--ext-unix-sk)
    refused "$child" "$T/ext-img2" "pid $child fd $sfd" "has no name"
    verdict "$wl"
}

# --ext-unix-sk: the datagram socket is connected again to the path of its peer outside.
case_external_dgram() {
    local wl=$T/extd pid child sfd dfd img=$T/extd-img rpid rc=0
    mkdir -p "$wl"
    pid=$(cr_run "$T/extd.log" "$WL_DIR/wl_unix" --unsupported external-dgram "$wl")
    SHOW_ON_FAIL=("$T/extd.log" "$img/dump.log" "$img/restore.log")
    wait_file "$wl/ready" 30
    wait_file "$wl/child" 30
    read -r child sfd dfd <"$wl/child"
    DUMP_OPTS=()
    refused "$child" "$img-refused" "pid $child fd $dfd" "$wl/ext.sock" "--ext-unix-sk"
    cr_capture dump -t "$child" -D "$img" --ext-unix-sk
    [[ $CR_RC -eq 0 ]] || fail "cr dump --ext-unix-sk -t $child failed ($CR_RC): $CR_ERR"
    wait_gone "$child"
    wait_pid_free "$child"

    # A section that names a peer it does not hold is refused before any process exists.
    cp -a "$img" "$T/bad-img"
    "$CR" decode "$img/unix.cr" | jq '.sockets[0].peer = 4000000000' >"$T/bad.json"
    "$CR" encode -D "$T/bad-img" --section unix.cr "$T/bad.json" || fail "cr encode of a changed unix.cr failed"
    cr_capture restore -D "$T/bad-img"
    expect_cr_error restore "cr.net.unix" "peer socket:[4000000000] is not in the image"
    ! is_running "$child" || fail "pid $child runs after the refused restore"
    wait_pid_free "$child"

    timeout -k 5 60 "$CR" restore -D "$img" >"$T/extd-restore.out" 2>"$T/extd-restore.err" &
    rpid=$!
    track "$rpid" timeout
    wait_file "$img/restore.log" 30
    verdict "$wl"
    wait "$rpid" || rc=$?
    [[ $rc -eq 0 ]] || fail "cr restore of the child exited $rc; stderr: $(<"$T/extd-restore.err")"
}

run_case round_trip case_round_trip
run_case leave_running case_leave_running
run_case inflight_eventfd case_inflight_eventfd
run_case pending_data case_pending_data
run_case external_peer case_external_peer
run_case external_dgram case_external_dgram
finish_cases
