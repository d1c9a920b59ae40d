#!/bin/bash
# cr decode / cr encode on a real image (wl_mixed: memory, threads, files, a pipe with queued
# data, signal state). For every section and the manifest: the JSON is valid, encoding it gives a
# buffer that passes the verifier and decodes to the same JSON (every field, defaults included),
# and a second round trip is byte-identical to the first. Then the proof that nothing was lost:
# a copy of the image with every section replaced by its re-encoded form (and one handler's
# version raised by a minor) restores, and wl_mixed checks itself. A copy whose manifest claims
# a new major version of a handler is refused before anything runs.
source "$(dirname "$0")/lib.sh"

wl=$T/wl
img=$T/img
mkdir -p "$wl" "$T/json"
pid=$(cr_run "$T/wl.log" "$WL_DIR/wl_mixed" "$wl")
SHOW_ON_FAIL=("$T/wl.log" "$img/dump.log" "$T/img2/restore.log" "$T/restore.err")
wait_file "$wl/ready" 30
ids=$(tree_ids "$pid")
cr_capture dump -t "$pid" -D "$img"
[[ $CR_RC -eq 0 ]] || fail "cr dump -t $pid failed ($CR_RC): $CR_ERR"

schema_of() { # FILE: the file identifier at bytes 4..7
    dd if="$1" bs=1 skip=4 count=4 status=none
}

identical=0 total=0
sections=$("$CR" inspect --format json "$img" | jq -r '.sections[] | select(.schema != "") | .file')
[[ -n $sections ]] || fail "no sections in the image"
for name in manifest.cr $sections; do
    f=$img/$name j1=$T/json/$name.json j2=$T/json/$name.2.json
    id=$(schema_of "$f")
    "$CR" decode "$f" >"$j1" || fail "cr decode $name failed"
    jq -e . "$j1" >/dev/null || fail "cr decode $name printed invalid JSON"
    "$CR" encode --schema "$id" -o "$T/json/$name.bin" "$j1" || fail "cr encode $name failed"
    "$CR" decode "$T/json/$name.bin" >"$j2" || fail "re-encoded $name fails decoding (verifier)"
    cmp -s "$j1" "$j2" || fail "$name: re-encoded section decodes differently: $(diff "$j1" "$j2" | head -n 20)"
    "$CR" encode --schema "$id" -o "$T/json/$name.bin2" "$j2" || fail "second cr encode $name failed"
    cmp -s "$T/json/$name.bin" "$T/json/$name.bin2" || fail "$name: second round trip is not byte-identical"
    if cmp -s "$f" "$T/json/$name.bin"; then identical=$((identical + 1)); fi
    total=$((total + 1))
done
log "$total files (manifest and sections): every one equal field by field after decode/encode; $identical byte-identical to what the handler wrote"

# Field values land where they should: the manifest's tree is the one dumped.
[[ $(jq '.root_pid' "$T/json/manifest.cr.json") == "$pid" ]] || fail "decoded manifest has root_pid $(jq .root_pid "$T/json/manifest.cr.json"), dumped $pid"
[[ $(jq -r '[.tasks[].tids[]] | sort | join(" ")' "$T/json/manifest.cr.json") == "$(tr ' ' '\n' <<<"$ids" | sort -n | tr '\n' ' ' | sed 's/ $//')" ]] ||
    fail "decoded manifest's thread ids differ from the dumped ones ($ids)"

# What cannot be decoded says why.
pages=$(ls "$img"/pages-*.img | head -n 1)
cr_capture decode "$pages"
expect_cr_error decode "${pages##*/}" "no FlatBuffers file identifier"
printf '{ "tasks": [ { "no_such_field": 1 } ] }' >"$T/bad.json"
cr_capture encode --schema CRSG -o "$T/bad.bin" "$T/bad.json"
expect_cr_error encode "bad.json" "no_such_field"
cr_capture encode --schema ZZZZ -o "$T/bad.bin" "$T/bad.json"
expect_cr_error encode "no schema with file identifier 'ZZZZ'"

wait_gone $ids
wait_pid_free $ids

# A new major version of a handler in the manifest: refused, nothing runs, the image unchanged.
cp -a "$img" "$T/img3"
jq '(.handlers[] | select(.id == "cr.signal.signals") | .version) = "2.0.0"' "$T/json/manifest.cr.json" >"$T/major.json"
"$CR" encode -D "$T/img3" --section manifest.cr "$T/major.json" || fail "cr encode of the manifest failed"
cr_capture restore -D "$T/img3" -d
expect_cr_error restore "cr.signal.signals 2.0.0" "cannot read it"
for id in $ids; do ! is_running "$id" || fail "pid $id runs after the refused restore"; done

# Every section re-encoded in place (the manifest follows), one handler a minor version newer.
cp -a "$img" "$T/img2"
for name in $sections; do
    "$CR" encode -D "$T/img2" --section "$name" "$T/json/$name.json" || fail "cr encode -D img2 --section $name failed"
    cmp -s "$T/img2/$name" "$T/json/$name.bin" || fail "cr encode -D wrote a different $name than cr encode -o"
done
"$CR" decode "$T/img2/manifest.cr" |
    jq '(.handlers[] | select(.id == "cr.signal.signals") | .version) = "1.7.0"' >"$T/minor.json"
"$CR" encode -D "$T/img2" --section manifest.cr "$T/minor.json" || fail "cr encode of the manifest failed"
"$CR" inspect "$T/img2" >/dev/null || fail "cr inspect of the re-encoded image fails (sha256 or verifier)"

timeout -k 5 120 "$CR" restore -D "$T/img2" >"$T/restore.out" 2>"$T/restore.err" &
rpid=$!
track "$rpid" timeout
touch "$wl/go"
rc=0
wait "$rpid" || rc=$?
((rc != 124 && rc != 137)) || fail "cr restore of the re-encoded image did not finish within 120 s"
[[ $rc -eq 0 ]] || fail "cr restore of the re-encoded image exited $rc; stderr: $(<"$T/restore.err")"
[[ $(<"$wl/result") == ok ]] || fail "wl_mixed after the re-encoded restore says '$(<"$wl/result")'"
log "ok: image with every section re-encoded (and cr.signal.signals 1.7.0) restored; wl_mixed checked itself"
