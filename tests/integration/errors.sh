#!/bin/bash
# Every error a user can hit in the basic commands: each must fail with one clear line naming
# the culprit, and lose nothing (the target runs on, the image stays as it was).
source "$(dirname "$0")/lib.sh"

# A PID nobody uses, from the top of the range.
unused_pid() {
    local p
    p=$(($(</proc/sys/kernel/pid_max) - 1))
    while [[ -n $(pid_holders "$p") ]]; do p=$((p - 1)); done
    echo "$p"
}

case_nonexistent_pid() {
    local pid img=$T/nopid
    pid=$(unused_pid)
    cr_capture dump -t "$pid" -D "$img"
    expect_cr_error dump
    names_number "$CR_ERR_LINE" "$pid" || fail "error does not name pid $pid: $CR_ERR_LINE"
    [[ ! -e $img/manifest.cr ]] || fail "a failed dump left $img/manifest.cr"
}

# One dumped shell loop, shared by the flipped-byte cases (its PID in $T/loop.pid).
IMG=$T/img
case_make_image() {
    local pid ids
    pid=$(start_loop "$T/loop")
    wait_lines "$T/loop/loop.log" 1 10
    ids=$(tree_ids "$pid")
    cr_capture dump -t "$pid" -D "$IMG"
    [[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
    echo "$pid" >"$T/loop.pid"
    wait_pid_free "$pid" $ids
}

flipped_restore() { # FILE (a name inside the image)
    local name=$1 copy=$T/flip-${1//[^A-Za-z0-9]/_} before after LOOP_PID
    [[ -f $T/loop.pid ]] || fail "no image to corrupt (its dump failed)"
    LOOP_PID=$(<"$T/loop.pid")
    [[ -f $IMG/$name ]] || fail "the image has no $name"
    cp -a "$IMG" "$copy"
    flip_byte "$copy/$name"
    before=$(image_digest "$copy")
    cr_capture restore -D "$copy" -d
    if is_running "$LOOP_PID"; then track "$LOOP_PID" loop.sh; fi
    expect_cr_error restore "$name"
    after=$(image_digest "$copy")
    [[ $before == "$after" ]] || fail "restore changed the image $copy"
    ! is_running "$LOOP_PID" || fail "a process $LOOP_PID runs after the failed restore"
}

case_flip_manifest() { flipped_restore manifest.cr; }

case_flip_section() {
    local f
    for f in "$IMG"/*.cr; do
        [[ ${f##*/} == manifest.cr ]] || { flipped_restore "${f##*/}"; return; }
    done
    fail "the image has no section file besides manifest.cr: $(ls "$IMG")"
}

case_flip_pages() {
    local f
    for f in "$IMG"/pages-*.img; do
        [[ -f $f ]] && { flipped_restore "${f##*/}"; return; }
    done
    fail "the image has no pages-*.img file: $(ls "$IMG")"
}

# Every wl_mixed and cr process: a failed restore must not add (or lose) any.
crowd() { { pgrep -x 'wl_mixed|cr' || true; } | sort -n | tr '\n' ' '; }

# A restore while the image's PIDs are taken (the original runs on after --leave-running).
case_pid_in_use() {
    local wl=$T/inuse img=$T/inuse-img pid ids id named= before after
    mkdir -p "$wl"
    pid=$(cr_run "$T/inuse.log" "$WL_DIR/wl_mixed" "$wl")
    wait_file "$wl/ready" 30
    ids=$(tree_ids "$pid")
    cr_capture dump -t "$pid" -D "$img" --leave-running
    [[ $CR_RC -eq 0 ]] || fail "cr dump --leave-running -t $pid failed ($CR_RC): $CR_ERR"
    before=$(crowd)
    local digest
    digest=$(image_digest "$img")
    cr_capture restore -D "$img" -d
    expect_cr_error restore
    for id in $ids; do names_number "$CR_ERR_LINE" "$id" && named=$id; done
    [[ -n $named ]] || fail "error names none of the busy ids ($(echo $ids)): $CR_ERR_LINE"
    after=$(crowd)
    [[ $before == "$after" ]] || fail "processes changed across the failed restore: '$before' -> '$after'"
    [[ $digest == "$(image_digest "$img")" ]] || fail "restore changed the image $img"
    # The original lost nothing either.
    touch "$wl/go"
    wait_file "$wl/result" 30
    [[ $(<"$wl/result") == ok ]] || fail "original wl_mixed says '$(<"$wl/result")' after the failed restore; log: $(<"$T/inuse.log")"
}

# A handler built for ABI 2.0 is refused by name, by both commands that load handlers.
case_bad_abi() {
    local dir=$T/badabi so pid
    [[ -f ${CR_BADABI_HANDLER:-} ]] || fail "CR_BADABI_HANDLER does not name the test handler"
    mkdir -p "$dir"
    cp "$CR_BADABI_HANDLER" "$dir/"
    so=$dir/$(basename "$CR_BADABI_HANDLER")
    CR_PLUGIN_PATH=$dir cr_capture plugins
    expect_cr_error plugins "$so" "2.0" "speaks 1."
    pid=$(start_loop "$T/abi-loop")
    CR_PLUGIN_PATH=$dir cr_capture dump -t "$pid" -D "$T/abi-img"
    expect_cr_error dump "$so" "2.0" "speaks 1."
    is_running "$pid" || fail "pid $pid is gone after the refused dump"
    assert_untraced "$pid"
}

# An fd of a kind no handler supports (a raw netlink socket) stops the dump before anything
# happens; the error names the pid, the fd and the kind. The unix socketpair next to it is fine.
case_unclaimed_fd() {
    local wl=$T/sock pid fd c0 c1 c2 e out
    mkdir -p "$wl"
    pid=$(cr_run "$T/sock.log" "$WL_DIR/wl_unix_socket" "$wl" netlink)
    wait_file "$wl/ready" 30
    fd=$(<"$wl/fd")
    out=$(request_count "$wl")
    read -r c0 e <<<"$out"
    cr_capture dump -t "$pid" -D "$T/sock-img"
    expect_cr_error dump "pid $pid fd $fd:" "netlink raw socket" "no handler supports it"
    is_running "$pid" || fail "pid $pid is gone after the failed dump"
    assert_untraced "$pid"
    out=$(request_count "$wl")
    read -r c1 e <<<"$out"
    sleep 0.5
    out=$(request_count "$wl")
    read -r c2 e <<<"$out"
    ((c1 > c0 && c2 > c1)) || fail "counter does not advance after the failed dump: $c0 $c1 $c2"
    [[ $e == 0 ]] || fail "socketpair lost or mangled $e byte(s)"
}

run_case nonexistent_pid case_nonexistent_pid
run_case make_image case_make_image
run_case flip_manifest case_flip_manifest
run_case flip_section case_flip_section
run_case flip_pages case_flip_pages
run_case pid_in_use case_pid_in_use
run_case bad_abi case_bad_abi
run_case unclaimed_fd case_unclaimed_fd
finish_cases
