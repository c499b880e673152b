#!/usr/bin/env bash
# Starts a receiving stack in a temporary directory, runs the stack_e2e
# integration tests against it and stops it again. Exits with the tests'
# status. Runs as root, as tests/stack/stack.sh does.
#
# The directory is removed when the tests pass and kept, with the daemons'
# logs, when they fail.
set -euo pipefail
cd "$(dirname "$0")/../.."

directory=$(mktemp -d /tmp/mailcanary-stack.XXXXXX)
status=1
finish() {
    tests/stack/stack.sh stop "$directory" || true
    if ((status == 0)); then
        rm -rf "$directory"
    else
        echo "run-e2e: the stack's files and logs are kept in $directory" >&2
    fi
}
trap finish EXIT

tests/stack/stack.sh start "$directory"
status=0
MAILCANARY_STACK_ENV="$directory/stack.env" \
    cargo test --locked --test integration stack_e2e -- --ignored || status=$?
exit "$status"
