#!/bin/sh
# Viewer latency bench: hlsd vs ffmpeg's plain HLS behind nginx, both watched in Chromium + hls.js.
# Builds what it needs and runs benches/viewer_latency.mjs (DURATION, WARMUP, ONLY, HLSD_ARGS,
# STRICT, BENCH_JSON are passed through; see that file). Needs chromium, ffmpeg, nginx, node.
set -eu
cd "$(dirname "$0")/.."
[ -d player/node_modules/playwright-core ] || npm ci --prefix player --no-audit --no-fund
if [ -z "${HLSD_BIN:-}" ]; then
    cargo build --release
    HLSD_BIN=target/release/hlsd
    export HLSD_BIN
fi
exec node benches/viewer_latency.mjs "$@"
