#!/bin/bash
# Distribution packages. `packages.sh build` makes them (once, as the ctest fixture the package
# tests share) into $CR_BUILD_DIR/packages; `packages.sh` checks them: one package per handler
# depending on cr-core of the same version, shared-library dependencies filled in, man pages and
# completion in cr-core; cr-core plus two handler packages in an empty prefix gives a cr that
# lists exactly those two, and a dump that needs a third fails naming its package; with every
# handler package, the packaged cr dumps and restores.
source "$(dirname "$0")/lib.sh"

BUILD=${CR_BUILD_DIR:?CR_BUILD_DIR must name the build directory}
PKG=$BUILD/packages

if [[ ${1:-} == build ]]; then
    rm -rf "$PKG"
    mkdir -p "$PKG"
    start=$SECONDS
    cpack --config "$BUILD/CPackConfig.cmake" -B "$PKG" >"$PKG/cpack.log" 2>&1 ||
        { tail -n 30 "$PKG/cpack.log" >&2; fail "cpack failed"; }
    rm -rf "$PKG/_CPack_Packages"
    log "built $(ls "$PKG"/*.deb | wc -l) packages in $((SECONDS - start)) s"
    exit 0
fi

deb() { # PACKAGE: its .deb file
    local f
    f=$(ls "$PKG/$1"_*.deb 2>/dev/null | head -n 1)
    [[ -n $f ]] || fail "no package $1 in $PKG: $(cd "$PKG" && ls *.deb 2>/dev/null | tr '\n' ' ')"
    echo "$f"
}
field() { dpkg-deb -f "$(deb "$1")" "$2"; }
contents() { dpkg-deb -c "$(deb "$1")" | awk '{ print $6 }'; }

VERSION=$(field cr-core Version)
VERSION=${VERSION%-*}

case_handler_packages() {
    local so id pkg depends n=0
    for so in "$BUILD"/lib/cr/handlers/*.so; do
        id=$(basename "$so" .so)
        pkg=cr-handler-${id#cr.}
        pkg=${pkg//./-}
        contents "$pkg" | grep -q "/cr/handlers/$id.so$" || fail "$pkg does not hold $id.so"
        depends=$(field "$pkg" Depends)
        assert_contains "$depends" "cr-core (= $VERSION" "Depends of $pkg"
        n=$((n + 1))
    done
    ((n >= 2)) || fail "only $n handlers in $BUILD/lib/cr/handlers"
    log "$n handler packages, each depending on cr-core (= $VERSION)"
    ! ls "$PKG"/cr-handler-test-* >/dev/null 2>&1 || fail "a test-only handler was packaged: $(ls "$PKG"/cr-handler-test-*)"
}

case_core_package() {
    local depends files page
    depends=$(field cr-core Depends)
    # From dpkg-shlibdeps: nobody wrote these names down.
    for lib in libc6 libstdc++6 libboost-program-options libflatbuffers2 libcap2; do
        assert_contains "$depends" "$lib" "Depends of cr-core"
    done
    files=$(contents cr-core)
    for f in /usr/bin/cr /share/man/man1/cr.1.gz /share/man/man1/cr-inspect.1.gz \
        /share/man/man1/cr-decode.1.gz /share/bash-completion/completions/cr \
        /share/cr/schemas/core/manifest.bfbs /share/cr/schemas/handlers/memory.bfbs; do
        grep -q -- "$f$" <<<"$files" || fail "cr-core has no $f"
    done
    grep -q 'libcr-core\.so\.0' <<<"$files" || fail "cr-core has no libcr-core.so.0"
    ! grep -q '/cr/handlers/.*\.so$' <<<"$files" || fail "cr-core holds a handler: $(grep '/cr/handlers/' <<<"$files")"
    files=$(contents cr-sdk)
    for f in /include/cr/sdk/abi.h /include/cr/sdk/handler.hpp /cmake/cr/crConfig.cmake \
        /cmake/cr/CrHandler.cmake /share/cr/schemas/handlers/memory.fbs; do
        grep -q -- "$f$" <<<"$files" || fail "cr-sdk has no $f"
    done
    assert_contains "$(field cr-sdk Depends)" "cr-core (= $VERSION" "Depends of cr-sdk"
    # Every man page renders without a warning.
    mkdir -p "$T/core"
    dpkg-deb -x "$(deb cr-core)" "$T/core"
    for page in "$T"/core/usr/share/man/man1/*.1.gz; do
        [[ $(zcat "$page" | head -c 3) == .so ]] && continue
        out=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1) || fail "groff fails on $page: $out"
        [[ -z $out ]] || fail "groff warns on ${page##*/}: $out"
    done
}

# Bash completion, with the two bash-completion helpers it uses stubbed.
case_completion() {
    local out
    mkdir -p "$T/core"
    dpkg-deb -x "$(deb cr-core)" "$T/core"
    out=$(bash -c '
        _init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword-1]}; }
        _filedir() { :; }
        source "$1"
        COMP_WORDS=(cr de); COMP_CWORD=1; _cr; echo "${COMPREPLY[*]}"
        COMP_WORDS=(cr inspect --f); COMP_CWORD=2; _cr; echo "${COMPREPLY[*]}"
        COMP_WORDS=(cr inspect --format ""); COMP_CWORD=3; _cr; echo "${COMPREPLY[*]}"
    ' _ "$T/core/usr/share/bash-completion/completions/cr")
    [[ $out == $'decode\n--format\ntext json' ]] || fail "completion gives: $out"
}

# Empty prefix with cr-core and two handler packages.
case_subset() {
    local root=$T/subset pid installed out rc pkg
    mkdir -p "$root"
    for p in cr-core cr-handler-memory-vma cr-handler-task-core; do dpkg-deb -x "$(deb "$p")" "$root"; done
    CR_SUB=$root/usr/bin/cr
    installed=$(env -u CR_PLUGIN_PATH "$CR_SUB" plugins) || fail "packaged cr plugins failed"
    [[ $(awk '/^[a-z]/ { print $1 }' <<<"$installed" | sort | tr '\n' ' ') == "cr.memory.vma cr.task.core " ]] ||
        fail "packaged cr lists: $installed"
    assert_contains "$installed" "file:     $root/usr/lib" "cr plugins"
    pid=$(cr_run "$T/sleep.log" sleep 600)
    rc=0
    out=$(env -u CR_PLUGIN_PATH "$CR_SUB" dump -t "$pid" -D "$T/subset-img" 2>&1) || rc=$?
    ((rc != 0)) || fail "a dump with two handlers succeeded"
    [[ $out =~ install\ (cr-handler-[a-z0-9-]+) ]] || fail "the dump error names no package: $out"
    pkg=${BASH_REMATCH[1]}
    [[ -n $(ls "$PKG/${pkg}"_*.deb 2>/dev/null) ]] || fail "the dump names $pkg, which was not built: $out"
    [[ $pkg != cr-handler-memory-vma && $pkg != cr-handler-task-core ]] || fail "the dump names an installed package: $out"
    is_running "$pid" || fail "sleep $pid died in the failed dump"
    [[ ! -e $T/subset-img/manifest.cr ]] || fail "the failed dump left a manifest"
    log "two packages: cr lists cr.memory.vma and cr.task.core; dump fails with: $out"
}

# Every package: the packaged cr dumps and restores a process with its packaged handlers.
case_full() {
    local root=$T/full pid ids json p
    mkdir -p "$root"
    for p in "$PKG"/cr-core_*.deb "$PKG"/cr-handler-*.deb; do dpkg-deb -x "$p" "$root"; done
    pid=$(cr_run "$T/full.log" sleep 600)
    ids=$(tree_ids "$pid")
    env -u CR_PLUGIN_PATH "$root/usr/bin/cr" dump -t "$pid" -D "$T/full-img" ||
        fail "packaged cr dump failed: $(tail -n 5 "$T/full-img/dump.log")"
    json=$(env -u CR_PLUGIN_PATH "$root/usr/bin/cr" inspect --format json "$T/full-img")
    [[ $(jq '.handlers | length' <<<"$json") == $(ls "$root"/usr/lib/*/cr/handlers/*.so "$root"/usr/lib/cr/handlers/*.so 2>/dev/null | wc -l) ]] ||
        fail "image handlers differ from the installed ones: $(jq -c .handlers <<<"$json")"
    wait_pid_free $ids
    env -u CR_PLUGIN_PATH "$root/usr/bin/cr" restore -D "$T/full-img" -d || fail "packaged cr restore failed"
    track "$pid" sleep
    is_running "$pid" || fail "restored sleep $pid does not run"
    log "packaged cr with $(jq '.handlers | length' <<<"$json") handler packages: dump and restore ok"
}

run_case handler_packages case_handler_packages
run_case core_package case_core_package
run_case completion case_completion
run_case subset case_subset
run_case full case_full
finish_cases
