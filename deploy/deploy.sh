#!/usr/bin/env bash
# `make deploy`: the preflight, build, deploy (guided the first time), publish the page, say
# what is next; all of it in `python -m deploy` (deploy/__main__.py). STACK_NAME picks the
# stack; extra arguments go to it (--preflight-only, --parameter Key=Value, --region ...).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .tools/bin/uv run --no-sync python -m deploy "$@"
