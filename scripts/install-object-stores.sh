#!/usr/bin/env bash
# Installs the object stores the back-to-source tests run against (issue 23): SeaweedFS (`weed`,
# an S3-compatible store) and fake-gcs-server (GCS's JSON API), each built from its Go module at
# a pinned version and cached outside the clone, so only the first run on a machine pays for the
# build (a few minutes for weed). Azurite (Azure Blob) comes from npm as a devDependency.
# Idempotent: a binary already in the cache is kept. Prints the bin directory on its last line.
set -euo pipefail
weed_version="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
gcs_version="${FAKE_GCS_SERVER_VERSION:-v1.56.1}"
bin="${DAMSELFLY_CACHE:-/var/cache/damselfly}/bin"
mkdir -p "$bin"
command -v go >/dev/null || { echo "install-object-stores: go is required (Debian: golang-go)" >&2; exit 1; }

# name, module, package within it, version: built into a temporary directory, then moved in
# whole, so an interrupted build never leaves a half-written binary under the cached name. The
# module is built as the main module from its downloaded source (not `go install pkg@version`):
# SeaweedFS's go.mod has replace directives, which `go install` refuses. The version is
# recorded beside the binary: another pinned version is built anew.
install_one() {
  local name=$1 module=$2 pkg=$3 version=$4
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/$name.version" 2>/dev/null)" = "$version" ]; then return 0; fi
  local tmp dir
  rm -rf "$bin/.$name."*  # what an interrupted run left
  tmp=$(mktemp -d "$bin/.$name.XXXXXX")
  dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "install-object-stores: cannot download $module@$version" >&2; return 1; }
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -o "$tmp/$name" "$pkg") >&2
  mv "$tmp/$name" "$bin/$name"
  echo "$version" >"$bin/$name.version"
  rm -rf "$tmp"
}
install_one weed github.com/seaweedfs/seaweedfs ./weed "$weed_version" &
weed_pid=$!
install_one fake-gcs-server github.com/fsouza/fake-gcs-server . "$gcs_version" &
gcs_pid=$!
status=0
wait "$weed_pid" || status=1
wait "$gcs_pid" || status=1
[ "$status" -eq 0 ] || { echo "install-object-stores: a build failed" >&2; exit 1; }
echo "$bin"
