#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests (cargo test), then the player end-to-end tests
# in headless Chromium (node --test). Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
infra/setup.sh --test

echo "== cargo test" >&2
cargo test --no-fail-fast 2>&1

echo "== player end-to-end tests (headless Chromium)" >&2
HLSD_BIN="$PWD/target/debug/hlsd" node --test --test-concurrency=1 tests/e2e/ 2>&1
