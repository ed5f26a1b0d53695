#!/usr/bin/env bash
# Installs the AWS CLI (awscli, PyPI) the s3 bench suite measures dfget against (issue 23,
# bench/s3.ts: `aws s3 cp` from SeaweedFS to the same disk): a Python venv at a pinned version,
# cached outside the clone (seconds after the first run on a machine), run as
# `venv-awscli/bin/python -m awscli`. Idempotent: a venv of the pinned version is kept.
set -euo pipefail
exec bash "$(dirname "$0")/install-pip-venv.sh" venv-awscli awscli "${AWSCLI_VERSION:-1.46.2}"
