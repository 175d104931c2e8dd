#!/bin/sh
# Lambda sets AWS_LAMBDA_RUNTIME_API; anything else (AWS Batch, docker run) gets the CLI.
set -e
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec python -m awslambdaric "$@"
fi
exec visual-search "$@"
