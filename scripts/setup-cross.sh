#!/usr/bin/env bash
# Set up ARM cross builds on a Debian 12 (bookworm) x86-64 host: Debian's rustc 1.85 (`rustc-web`)
# with its standard library for aarch64 and armv7hf, the GNU cross linkers, qemu-user-static to run
# the results, and libasound2-dev for both ARM architectures (the `alsa` feature of board builds).
#
# This is the verified recipe of ../shared/handbook/cross-toolchain.md as a script. It is
# idempotent: run it again and it only does what is missing. Needs root (apt, dpkg, /usr/lib).
# `.cargo/config.toml` in the repository names the linkers and runners that it installs.
#
#   bash scripts/setup-cross.sh          # then: RUSTC=/usr/bin/rustc cargo build --target ...
set -euo pipefail

V=1.85.0+dfsg3-1~deb12u3   # pinned: the amd64 and arm64 indexes can be at different versions
TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
RUSTLIB=/usr/lib/rustlib

if [[ $(id -u) -ne 0 ]]; then
  echo "error: run as root (apt-get, dpkg --add-architecture and $RUSTLIB need it)" >&2
  exit 1
fi
if ! grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "warning: this recipe is verified on Debian 12 (bookworm) only; going on" >&2
fi

need_update=0
for arch in arm64 armhf; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    need_update=1
  fi
done

PKGS=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross
      qemu-user-static binutils-aarch64-linux-gnu
      binutils-arm-linux-gnueabihf libasound2-dev:arm64 libasound2-dev:armhf pkg-config)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! /usr/bin/rustc --version 2>/dev/null | grep -q '^rustc 1\.85\.'; then
  missing+=("rustc-web=$V" "libstd-rust-web-dev=$V" "libstd-rust-web-1.85=$V")
fi
have_std=1
for t in "${TARGETS[@]}"; do [[ -d $RUSTLIB/$t/lib ]] || have_std=0; done

if ((${#missing[@]})) || ((have_std == 0)) || ((need_update)); then
  export DEBIAN_FRONTEND=noninteractive
  # An index of one architecture may fail to refresh while a mirror syncs: retry, then go on.
  for i in 1 2 3; do apt-get update -qq && break || sleep 10; done
fi
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ((have_std == 0)); then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "libstd-rust-web-dev:arm64=$V" "libstd-rust-web-dev:armhf=$V")
  for f in "$tmp"/*.deb; do dpkg -x "$f" "$tmp/root"; done
  for t in "${TARGETS[@]}"; do
    rm -rf "${RUSTLIB:?}/$t"
    cp -r "$tmp/root/usr/lib/rustlib/$t" "$RUSTLIB/"
  done
fi

echo "rustc: $(/usr/bin/rustc --version)"
for t in "${TARGETS[@]}"; do echo "std for $t: $(ls "$RUSTLIB/$t/lib" | grep -c '\.rlib$') rlibs"; done
aarch64-linux-gnu-gcc --version | head -1
arm-linux-gnueabihf-gcc --version | head -1
qemu-aarch64-static --version | head -1
