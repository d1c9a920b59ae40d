#!/bin/bash
# A small server under 20 dump/restore cycles in a row while its traffic flows: wl_server (a root
# listening on a unix stream socket with a connection from each of 8 clients that stream
# checksummed, numbered records and get each one acknowledged, a logger child fed through 9
# pipes, an epoll instance in every task). Each cycle: dump, wait for the PIDs to be free,
# restore -d with the same PIDs, see that every task holds the descriptors it held at the dump
# and no others, that no counter of any task went back and that every one of them moves on.
# After the last cycle the workload drains every stream and checks it: a byte lost or sent twice
# anywhere, or a task that does not exit 0, fails the test. Prints the wall time of each dump
# and restore, and their medians (ctest -V shows them).
source "$(dirname "$0")/lib.sh"

cycles=${CR_TEST_CYCLES:-20}
wl=$T/wl
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_server" "$wl")
SHOW_ON_FAIL=("$T/wl.log")
wait_file "$wl/ready" 30
ids=$(tree_ids "$pid" | sort -n)
ntasks=$(wc -w <<<"$ids")
((ntasks == 10)) || fail "wl_server runs $ntasks tasks, expected 10: $ids"
for id in $ids; do track "$id" wl_server; done

# The logger's latest view of every source: "NAME N N ..." per line (see wl_server.c).
counters() {
    rm -f "$wl/count"
    touch "$wl/req"
    wait_file "$wl/count" 10
    cat "$wl/count"
}

# Each field of NEW that is not at least (ge) or not above (gt) the same field of OLD, as
# "NAME field K: OLD -> NEW"; a line of one missing from the other is named too.
unmet() { # OLD NEW ge|gt
    awk -v mode="$3" '
        NR == FNR { for (i = 2; i <= NF; i++) old[$1, i] = $i + 0; nf[$1] = NF; next }
        !($1 in nf) { print $1 ": not there before"; next }
        {
            seen[$1] = 1
            if (NF != nf[$1]) print $1 ": " NF - 1 " fields, " nf[$1] - 1 " before"
            for (i = 2; i <= NF; i++) {
                o = old[$1, i]; n = $i + 0
                if ((mode == "gt" && n <= o) || (mode == "ge" && n < o))
                    printf "%s field %d: %.0f -> %.0f\n", $1, i - 1, o, n
            }
        }
        END { for (k in nf) if (!(k in seen)) print k ": gone" }
    ' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# Waits until every counter is above those of FROM.
wait_advance() { # CYCLE FROM
    local deadline=$((SECONDS + 15)) left
    while :; do
        left=$(unmet "$2" "$(counters)" gt)
        [[ -n $left ]] || return 0
        ((SECONDS < deadline)) || fail "cycle $1: counters stand still after the restore: ${left//$'\n'/; }"
        sleep 0.1
    done
}

# Every open descriptor of every task: "PID FD TARGET" with the inode numbers of pipes and
# sockets left out, so that a restored descriptor compares equal to the one dumped.
fd_table() {
    local p
    for p in $ids; do
        find "/proc/$p/fd" -mindepth 1 -printf "$p %f %l\n" 2>/dev/null || true
    done | sed 's/:\[[0-9]*\]$//' | sort
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start=$(counters)
dumps=()
restores=()
for ((i = 1; i <= cycles; i++)); do
    img=$T/img-$i
    SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$img/restore.log")
    before=$(counters)
    fds_before=$(fd_table)
    t0=$(now_ms)
    cr_capture dump -t "$pid" -D "$img"
    t1=$(now_ms)
    [[ $CR_RC -eq 0 ]] || fail "cycle $i: cr dump -t $pid failed ($CR_RC): $CR_ERR"
    wait_gone $ids
    wait_pid_free $ids
    t2=$(now_ms)
    cr_capture restore -D "$img" -d
    t3=$(now_ms)
    [[ $CR_RC -eq 0 ]] || fail "cycle $i: cr restore -D $img -d failed ($CR_RC): $CR_ERR"
    for id in $ids; do
        is_running "$id" || fail "cycle $i: pid $id does not run after the restore"
    done
    now_ids=$(tree_ids "$pid" | sort -n)
    [[ $now_ids == "$ids" ]] || fail "cycle $i: the restored tree holds ${now_ids//$'\n'/ }, expected ${ids//$'\n'/ }"
    fds_after=$(fd_table)
    fd_diff=$({ diff <(printf '%s\n' "$fds_before") <(printf '%s\n' "$fds_after") || true; } |
        sed -n 's/^< \(.*\)/\1 gone/p; s/^> \(.*\)/\1 appeared/p')
    [[ -z $fd_diff ]] || fail "cycle $i: the restored tasks' descriptors differ from the dumped ones (pid fd target): ${fd_diff//$'\n'/; }"
    after=$(counters)
    back=$(unmet "$before" "$after" ge)
    [[ -z $back ]] || fail "cycle $i: counters went back after the restore: ${back//$'\n'/; }"
    wait_advance "$i" "$after"
    dumps+=($((t1 - t0)))
    restores+=($((t3 - t2)))
    ((i > 1)) || log "image of the server tree: $(du -sk "$img" | cut -f1) KiB"
    log "cycle $i: dump $((t1 - t0)) ms, restore $((t3 - t2)) ms"
    rm -rf "$img"
done
SHOW_ON_FAIL=("$T/wl.log")

# Drain and check: the workload writes its verdict and every task exits.
end=$(counters)
touch "$wl/stop"
wait_file "$wl/result" 60
wait_gone $ids
grep -q '^wl_server: ok$' "$T/wl.log" || fail "no 'wl_server: ok' in the workload's log"
[[ $(<"$wl/result") == ok ]] || fail "$wl/result says '$(<"$wl/result")'"
records() { awk '$1 == "server" { print $3 }' <<<"$1"; }
echo "server: $cycles cycles; dump median $(printf '%s\n' "${dumps[@]}" | median) ms" \
    "(max $(printf '%s\n' "${dumps[@]}" | sort -n | tail -1)), restore median" \
    "$(printf '%s\n' "${restores[@]}" | median) ms (max $(printf '%s\n' "${restores[@]}" | sort -n | tail -1))," \
    "$ntasks tasks, $(($(records "$end") - $(records "$start"))) records checked across the cycles"
log "ok: $cycles cycles, every stream whole"
