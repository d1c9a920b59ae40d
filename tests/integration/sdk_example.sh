#!/bin/bash
# The SDK as a vendor meets it: cr-sdk, cr-core and the handler packages unpacked into an empty
# prefix, examples/statefile configured and built out of tree against that prefix only, its own
# test run from its build tree, then installed into the prefix and run again from there (the
# handler's section written, decoded to JSON through the installed .bfbs, restored). Last, an
# image that needs the example handler does not restore without it, and the error names the
# package. Needs the packages of integration.packages_build.
source "$(dirname "$0")/lib.sh"

BUILD=${CR_BUILD_DIR:?CR_BUILD_DIR must name the build directory}
SRC=${CR_SOURCE_DIR:?CR_SOURCE_DIR must name the source directory}
PKG=$BUILD/packages
ROOT=$T/root
PCR=$ROOT/usr/bin/cr
unset CR_PLUGIN_PATH CR_SCHEMA_PATH

ls "$PKG"/cr-sdk_*.deb >/dev/null 2>&1 || fail "no cr-sdk package in $PKG (run integration.packages_build)"
mkdir -p "$ROOT"
for p in "$PKG"/cr-core_*.deb "$PKG"/cr-sdk_*.deb "$PKG"/cr-handler-*.deb; do dpkg-deb -x "$p" "$ROOT"; done

ex=$T/build
start=$SECONDS
cmake -S "$SRC/examples/statefile" -B "$ex" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_PREFIX_PATH="$ROOT/usr" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON >"$T/configure.log" 2>&1 ||
    { tail -n 30 "$T/configure.log" >&2; fail "configuring the example failed"; }
cr_dir=$(sed -n 's/^cr_DIR:PATH=//p' "$ex/CMakeCache.txt")
[[ $cr_dir == "$ROOT"/usr/* ]] || fail "the example found cr in '$cr_dir', not in the fresh prefix"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$ex/CMakeCache.txt")
[[ $prefix == "$ROOT/usr" ]] || fail "the example installs into '$prefix', not into cr's prefix $ROOT/usr"
cmake --build "$ex" -j2 >"$T/build.log" 2>&1 || { tail -n 30 "$T/build.log" >&2; fail "building the example failed"; }
! grep -q -- "$SRC/sdk" "$ex/build.ninja" || fail "the example build uses the SDK of the source tree $SRC/sdk"
log "example configured and built against $cr_dir in $((SECONDS - start)) s"

# Its own test, from its build tree (CR_PLUGIN_PATH and CR_SCHEMA_PATH point there).
(cd "$ex" && ctest --output-on-failure) >"$T/ctest.log" 2>&1 || { cat "$T/ctest.log" >&2; fail "the example's ctest failed"; }

cmake --install "$ex" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "installing the example failed"; }
so=$(find "$ROOT/usr/lib" -path '*/cr/handlers/example.statefile.so')
[[ -n $so ]] || fail "example.statefile.so is not installed under $ROOT/usr/lib: $(cat "$T/install.log")"
[[ -f $ROOT/usr/share/cr/schemas/example.statefile/statefile.bfbs ]] || fail "statefile.bfbs is not installed"
plugins=$("$PCR" plugins)
assert_contains "$plugins" "example.statefile 1.0.0" "cr plugins"
assert_contains "$plugins" "file:     $so" "cr plugins"

# Installed: the same test with nothing but the prefix.
CR_BIN=$PCR STATEFILE_APP=$ex/statefile_app bash "$SRC/examples/statefile/test.sh" 2>"$T/test.log" ||
    { cat "$T/test.log" >&2; fail "the example's test against the installed handler failed"; }
log "$(tail -n 1 "$T/test.log")"

# An image the example handler took part in needs it back.
pid=$(cr_run "$T/sleep.log" sleep 600)
ids=$(tree_ids "$pid")
"$PCR" dump -t "$pid" -D "$T/img" || fail "dump with the example installed failed"
[[ $("$PCR" inspect --format json "$T/img" | jq -r '.handlers[] | select(.id == "example.statefile") | .version') == 1.0.0 ]] ||
    fail "the image does not record example.statefile 1.0.0"
wait_pid_free $ids
rm "$so"
CR=$PCR
cr_capture restore -D "$T/img" -d
if is_running "$pid"; then track "$pid" sleep; fi
expect_cr_error restore "example.statefile" "install cr-handler-example-statefile"
! is_running "$pid" || fail "sleep $pid runs after the refused restore"
log "ok: without the handler: $CR_ERR_LINE"
