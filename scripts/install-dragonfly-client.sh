#!/usr/bin/env bash
# Installs Dragonfly's published Rust client (dfdaemon and dfget only: the others add link time) for the interop tests
# (issue 19). The build takes tens of minutes on 2 cores (it compiles its bundled RocksDB: Debian's
# is too old to link against), so the binaries are cached outside the clone and only the first run
# on a machine pays for them. Prints the bin directory on its last line.
set -euo pipefail
version="${DRAGONFLY_CLIENT_VERSION:-1.5.10}"
root="${DAMSELFLY_CACHE:-/var/cache/damselfly}/dragonfly-client-$version"
if [ -x "$root/bin/dfdaemon" ] && [ -x "$root/bin/dfget" ]; then
  echo "$root/bin"
  exit 0
fi
# bindgen (RocksDB's bindings) needs libclang; the API crate's build compiles .proto files that
# import protobuf's well-known types (Debian ships those in libprotobuf-dev).
need=()
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/duration.proto ] || need+=(libprotobuf-dev)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The build directory outlives a failed or interrupted run, so the next one resumes it.
tmp="$root.build"
mkdir -p "$tmp"
CARGO_TARGET_DIR="$tmp/target" cargo install dragonfly-client --version "$version" --locked --bin dfdaemon --bin dfget \
  --root "$tmp/install" >&2
rm -rf "$root" && mv "$tmp/install" "$root" && rm -rf "$tmp"
echo "$root/bin"
