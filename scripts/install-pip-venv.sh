#!/usr/bin/env bash
# Installs one PyPI package at a pinned version into a Python venv cached outside the clone, for
# the real Python clients tests and benches run (scripts/install-hub-client.sh,
# scripts/install-awscli.sh). Usage: install-pip-venv.sh <venv name> <package> <version>.
# Idempotent: a venv of the pinned version is kept; another version is installed anew. Prints
# the venv's directory on its last line. Run its clients as `<venv>/bin/python -m <module>`: the
# venv is built under another name and moved, so the scripts pip writes name the old path on
# their #! line.
set -euo pipefail
[ "$#" -eq 3 ] || { echo "usage: install-pip-venv.sh <venv name> <package> <version>" >&2; exit 2; }
name=$1 package=$2 version=$3
venv="${DAMSELFLY_CACHE:-/var/cache/damselfly}/$name"
command -v python3 >/dev/null || { echo "install-pip-venv: python3 is required (for $package)" >&2; exit 1; }
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.version" 2>/dev/null)" = "$version" ]; then echo "$venv"; exit 0; fi
# Built beside it and moved in whole: an interrupted install never leaves a half-made venv under the name.
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp"
"$venv.tmp/bin/pip" install -q --disable-pip-version-check "$package==$version"
echo "$version" >"$venv.tmp/.version"
rm -rf "$venv"
mv "$venv.tmp" "$venv"
echo "$venv"
