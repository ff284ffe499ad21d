#!/usr/bin/env bash
# `make destroy`: empty the page's bucket (CloudFormation deletes only empty buckets), then
# delete the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK="${STACK_NAME:-realtime-token-vendor}"
.tools/bin/uv run --no-sync python -m deploy.publish_web --stack-name "$STACK" --empty
"$(pyenv which uvx 2>/dev/null || command -v uvx)" --quiet --from aws-sam-cli==1.170.0 sam delete --stack-name "$STACK"
