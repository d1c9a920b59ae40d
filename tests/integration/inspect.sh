#!/bin/bash
# cr inspect on a real image (wl_mixed: a parent with 4 threads and a child, a pipe with queued
# data, open files, untouched and zeroed pages), checked against what /proc said before the dump
# and against the image's own files: the tree, command lines and threads, files and the pipe
# queue, memory totals (dumped pages = page file sizes), every section with its size. Text and
# JSON say the same; a corrupted section makes inspect fail naming the file.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_mixed" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log")
wait_file "$wl/ready" 30
procs=$( (descendants "$pid"; echo "$pid") | sort -n)
declare -A threads
for p in $procs; do threads[$p]=$(ls "/proc/$p/task" | sort -n | tr '\n' ' '); done
cr_capture dump -t "$pid" -D "$img" --leave-running
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"
kill_tree "$pid"

json=$("$CR" inspect --format json "$img") || fail "cr inspect --format json failed"
text=$("$CR" inspect "$img") || fail "cr inspect failed"
q() { jq -r "$@" <<<"$json"; }

# The tree: every process, its threads, its command line from its own memory.
[[ $(q '.root_pid') == "$pid" ]] || fail "root_pid $(q .root_pid), dumped $pid"
[[ $(q '[.tasks[].pid] | sort | join(" ")') == "$(echo $procs)" ]] || fail "tasks $(q '[.tasks[].pid]|join(" ")'), /proc had $(echo $procs)"
for p in $procs; do
    [[ "$(q ".tasks[] | select(.pid == $p) | .threads | sort | join(\" \")") " == "${threads[$p]}" ]] ||
        fail "pid $p: threads $(q ".tasks[] | select(.pid == $p) | .threads"), /proc had ${threads[$p]}"
done
[[ $(q ".tasks[] | select(.pid == $pid) | .argv | join(\" \")") == "$WL_DIR/wl_mixed $wl" ]] ||
    fail "root argv is '$(q ".tasks[] | select(.pid == $pid) | .argv | join(\" \")")'"
assert_contains "$text" "$pid  $WL_DIR/wl_mixed $wl" "inspect text"
n=$(wc -w <<<"${threads[$pid]}")
assert_contains "$text" "$n thread(s)" "inspect text"

# Files: the pipe with its queued bytes, a regular file of the workload's directory.
[[ $(q '[.files[] | select(.kind == "fd:pipe" and (.detail | test("^pipe:\\[[0-9]+\\] (read|write) end")))] | length') -ge 2 ]] ||
    fail "no pipe ends with details: $(q -c .files)"
queued=$(q '[.files[] | select(.kind == "fd:pipe") | .detail | capture("(?<n>[0-9]+) bytes queued").n | tonumber] | max')
((queued > 0)) || fail "no pipe with queued bytes: $(q -c .files)"
[[ $(q "[.files[] | select(.detail | startswith(\"$wl/\"))] | length") -ge 1 ]] || fail "no open file of $wl: $(q -c .files)"
[[ $(q '.sockets | length') == 0 ]] || fail "sockets in an image of wl_mixed: $(q -c .sockets)"
assert_contains "$text" "bytes queued" "inspect text"

# Memory: dumped pages are exactly the page files; zero pages were skipped.
pages_bytes=$(cat "$img"/pages-*.img | wc -c)
[[ $(q '.memory.dumped_bytes') == "$pages_bytes" ]] || fail "dumped_bytes $(q .memory.dumped_bytes), page files hold $pages_bytes"
(($(q '.memory.zero_pages') > 0)) || fail "no zero pages skipped (wl_mixed has zeroed pages)"
(($(q '.memory.mapped_bytes') > pages_bytes)) || fail "mapped $(q .memory.mapped_bytes) not above dumped $pages_bytes"
[[ $(q '[.tasks[].memory.dumped_pages] | add') == $(q '.memory.dumped_pages') ]] || fail "per-task dumped pages do not add up"
assert_contains "$text" "zero pages skipped $(q '.memory.zero_pages')" "inspect text"

# Sections: each one listed with its real size, handler and schema.
while read -r file size schema handler; do
    [[ $(stat -c %s "$img/$file") == "$size" ]] || fail "$file: inspect says $size bytes, the file has $(stat -c %s "$img/$file")"
    assert_contains "$text" "$file" "inspect text"
done < <(q '.sections[] | "\(.file) \(.size) \(.schema) \(.handler)"')
[[ $(q '[.sections[] | select(.file == "memory.cr")] | .[0].schema') == CRMM ]] || fail "memory.cr is not listed as CRMM"
[[ $(q '[.sections[].file] | length') == $(ls "$img" | grep -cv -e '\.log$' -e '^manifest\.cr$') ]] ||
    fail "sections listed: $(q '[.sections[].file] | join(" ")'); in the image: $(ls "$img")"
log "$(grep -A1 '^memory' <<<"$text" | tail -n 1 | sed 's/^ *//')"

# A corrupted section: inspect fails, naming it.
cp -a "$img" "$T/bad"
flip_byte "$T/bad/files.cr"
cr_capture inspect "$T/bad"
expect_cr_error inspect "files.cr" "sha256 mismatch"
log "ok: tree, threads, argv, files, pipe queue, memory totals and sections match"
