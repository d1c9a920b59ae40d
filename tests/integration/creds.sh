#!/bin/bash
# Credentials and process attributes across a dump and restore (wl_creds: per-thread uids,
# gids, groups, the five capability sets, securebits, no_new_privs, seccomp filters and strict
# mode, personality, limits, dumpable, parent death signal, child subreaper), and the states cr
# cannot restore exactly: each must fail at dump time, naming the process and the part, and
# leave the process running untouched; a limit the restoring cr cannot grant fails the restore.
source "$(dirname "$0")/lib.sh"

# The workload drops to uids 1002 and 4000, which must reach its directory.
chmod 711 "$T"

has_cap_sys_resource() {
    local eff
    eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
    (((0x$eff >> 24) & 1))
}

# Runs cr with its open-file limits (soft and hard) set to $1; sets CR_RC, CR_OUT, CR_ERR.
cr_capture_nofile() { # LIMIT ARGS...
    local limit=$1 rc=0
    shift
    (ulimit -Sn "$limit" && ulimit -Hn "$limit" && exec timeout -k 5 180 "$CR" "$@") \
        >"$T/.cr.out" 2>"$T/.cr.err" || rc=$?
    CR_RC=$rc
    CR_OUT=$(<"$T/.cr.out")
    CR_ERR=$(<"$T/.cr.err")
}

# A process that keeps running: the target of the failure cases.
start_sleeper() { # NAME
    local pid
    pid=$(cr_run "$T/$1.log" sleep 600)
    for _ in $(seq 50); do
        [[ $(proc_comm "$pid") == sleep ]] && break
        sleep 0.02
    done
    echo "$pid"
}

case_round_trip() {
    local wl=$T/wl img=$T/img pid ids rpid
    mkdir -p "$wl"
    chmod 777 "$wl"
    pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_creds" "$wl")
    SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log" "$T/restore.err")
    wait_file "$wl/ready" 30
    [[ $(proc_comm "$pid") == wl_creds ]] || fail "pid $pid is '$(proc_comm "$pid")', expected wl_creds"
    ids=$(tree_ids "$pid")
    log "dumping wl_creds $pid (ids: $(echo $ids))"
    cr_capture dump -t "$pid" -D "$img"
    [[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
    wait_gone $ids
    wait_pid_free $ids
    restore_start "$img" 180
    release_then_go "$img" "$wl"
    restore_finish wl_creds "$wl" "$img" "$T/wl.log" 180
}

# A failed dump: one line naming the process and the part, no image, the target runs on.
expect_dump_refused() { # PID IMG NEEDLE...
    local pid=$1 img=$2
    shift 2
    expect_cr_error dump "$@"
    names_number "$CR_ERR_LINE" "$pid" || fail "error does not name pid $pid: $CR_ERR_LINE"
    [[ ! -e $img/manifest.cr ]] || fail "a failed dump left $img/manifest.cr"
    is_running "$pid" || fail "pid $pid died after the failed dump"
    assert_untraced "$pid"
}

case_user_notif_filter() {
    local wl=$T/notif img=$T/notif-img pid
    mkdir -p "$wl"
    pid=$(cr_run "$T/notif.log" "$WL_DIR/wl_creds" --user-notif "$wl")
    wait_file "$wl/ready" 30
    cr_capture dump -t "$pid" -D "$img"
    expect_dump_refused "$pid" "$img" "seccomp filter" "SECCOMP_RET_USER_NOTIF"
    grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status" || fail "pid $pid lost its seccomp filter"
}

case_limit_above_cr() {
    local img=$T/limit-img pid hard
    if has_cap_sys_resource; then
        log "cr has CAP_SYS_RESOURCE here: any limit can be restored, nothing to refuse"
        return 0
    fi
    pid=$(start_sleeper limit)
    hard=$(awk '/^Max open files/ { print $5 }' "/proc/$pid/limits")
    [[ $hard =~ ^[0-9]+$ && $hard -gt 1024 ]] || fail "pid $pid has open-file hard limit '$hard'"
    cr_capture_nofile $((hard - 1)) dump -t "$pid" -D "$img"
    expect_dump_refused "$pid" "$img" RLIMIT_NOFILE "hard limit $hard" "CAP_SYS_RESOURCE"
}

case_limit_at_restore() {
    local img=$T/rlimit-img pid hard
    if has_cap_sys_resource; then
        log "cr has CAP_SYS_RESOURCE here: any limit can be restored, nothing to refuse"
        return 0
    fi
    pid=$(start_sleeper rlimit)
    hard=$(awk '/^Max open files/ { print $5 }' "/proc/$pid/limits")
    cr_capture dump -t "$pid" -D "$img"
    [[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
    wait_gone "$pid"
    wait_pid_free "$pid"
    cr_capture_nofile $((hard - 1)) restore -D "$img" -d
    if is_running "$pid"; then track "$pid" sleep; fi
    expect_cr_error restore "pid $pid" RLIMIT_NOFILE "hard limit $hard" "CAP_SYS_RESOURCE"
    ! is_running "$pid" || fail "pid $pid runs after the failed restore"
    # The same image restores with the limits it needs.
    cr_capture restore -D "$img" -d
    [[ $CR_RC -eq 0 ]] || fail "cr restore -D $img -d failed ($CR_RC): $CR_ERR"
    track "$pid" sleep
    is_running "$pid" || fail "pid $pid does not run after the restore"
    [[ $(awk '/^Max open files/ { print $5 }' "/proc/$pid/limits") == "$hard" ]] || fail "pid $pid lost its hard limit"
}

run_case round_trip case_round_trip
run_case user_notif_filter case_user_notif_filter
run_case limit_above_cr case_limit_above_cr
run_case limit_at_restore case_limit_at_restore
finish_cases
