#!/usr/bin/env bash
# Installs the real Hugging Face client (huggingface_hub, PyPI) the model hub tests check their
# hub fixture against (issue 23, test/integration/model-hub-fixture.test.ts): a Python venv at a
# pinned version, cached outside the clone (seconds after the first run on a machine).
# Idempotent: a venv of the pinned version is kept; another version is installed anew.
set -euo pipefail
version="${HUGGINGFACE_HUB_VERSION:-2.5.0}"
venv="${DAMSELFLY_CACHE:-/var/cache/damselfly}/venv-hf"
command -v python3 >/dev/null || { echo "install-hub-client: python3 is required" >&2; exit 1; }
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.version" 2>/dev/null)" = "$version" ]; then echo "$venv"; exit 0; fi
# Built beside it and moved in whole: an interrupted install never leaves a half-made venv under the name.
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp"
"$venv.tmp/bin/pip" install -q --disable-pip-version-check "huggingface_hub==$version"
echo "$version" >"$venv.tmp/.version"
rm -rf "$venv"
mv "$venv.tmp" "$venv"
echo "$venv"
