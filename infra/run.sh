#!/usr/bin/env bash
# Builds and runs hlsd (release). With no arguments it serves the built-in test source on
# 0.0.0.0:8080 and prints the player URL; any arguments are passed to hlsd, e.g.
#   infra/run.sh --source "exec:rpicam-vid -t 0 --inline --intra 30 --codec h264 -o -"
set -euo pipefail
cd "$(dirname "$0")/.."
infra/setup.sh
cargo build --release --quiet
exec target/release/hlsd "$@"
