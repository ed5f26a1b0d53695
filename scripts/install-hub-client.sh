#!/usr/bin/env bash
# Installs the real Hugging Face client (huggingface_hub, PyPI) the model hub tests check their
# hub fixture against (issue 23, test/integration/model-hub-fixture.test.ts): a Python venv at a
# pinned version, cached outside the clone (seconds after the first run on a machine).
# Idempotent: a venv of the pinned version is kept; another version is installed anew.
set -euo pipefail
exec bash "$(dirname "$0")/install-pip-venv.sh" venv-hf huggingface_hub "${HUGGINGFACE_HUB_VERSION:-2.5.0}"
