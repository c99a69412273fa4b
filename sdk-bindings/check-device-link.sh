#!/bin/sh
# Builds the device example for aarch64 with feature `device` and checks that every C function
# declared in src/bindings.rs is an undefined dynamic symbol (U) of the binary, to be resolved
# by the device's libaxevent / libaxparameter / libglib-2.0 at run time, and none is defined
# in it (which would mean a double or stub got linked in).
#
# The real SDK libraries are not available here, so the link uses STUB shared libraries made
# from the symbol names of src/bindings.rs (empty functions; EARSHOT_AXSDK_LIB_DIR points
# build.rs at them). Stubs rather than -Wl,--unresolved-symbols=ignore-all: the linker still
# checks every other symbol, and a misspelt name still fails to link. The stubs' sonames are
# the plain lib<name>.so; the real soname comes from the SDK sysroot in a release build.
#
# Usage: sdk-bindings/check-device-link.sh   (from anywhere; honours CARGO_TARGET_DIR)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=aarch64-unknown-linux-gnu
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT

functions=$(sed -n 's/^ *pub fn \([a-z_0-9]*\)(.*/\1/p' "$here/src/bindings.rs" | sort -u)
[ -n "$functions" ] || { echo "no functions found in src/bindings.rs" >&2; exit 2; }

stub() { # stub LIBNAME PATTERN
    echo "$functions" | grep "$2" | sed 's/.*/void &(void) {}/' > "$stubs/$1.c"
    aarch64-linux-gnu-gcc -shared -fPIC -o "$stubs/lib$1.so" "$stubs/$1.c"
}
stub axevent '^ax_event_'
stub axparameter '^ax_parameter_'
stub glib-2.0 '^g_'

cd "$here"
EARSHOT_AXSDK_LIB_DIR="$stubs" RUSTC="${RUSTC:-/usr/bin/rustc}" \
    cargo build -p earshot-sdk --features device --target "$target" --release \
    --example device_smoke
bin="${CARGO_TARGET_DIR:-$here/../target}/$target/release/examples/device_smoke"

echo "undefined ax_*/g_* symbols of $bin:"
aarch64-linux-gnu-nm -D --undefined-only "$bin" | grep -E ' (ax_|g_(free|error_free|list_free|main_context_iteration)$)' || true
echo "NEEDED:"
aarch64-linux-gnu-readelf -d "$bin" | grep NEEDED

status=0
for f in $functions; do
    if ! aarch64-linux-gnu-nm -D --undefined-only "$bin" | grep -qE "^ +U $f\$"; then
        echo "MISSING: $f is not an undefined symbol of the binary" >&2
        status=1
    fi
    if aarch64-linux-gnu-nm --defined-only "$bin" 2>/dev/null | grep -qE " $f\$"; then
        echo "DEFINED: $f is defined in the binary" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "OK: all $(echo "$functions" | wc -l) declared functions are undefined (U)"
exit $status
