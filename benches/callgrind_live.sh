#!/usr/bin/env bash
# Instructions per frame on hlsd's live path (file source → Annex-B parser → segmenter → window:
# part published), counted by callgrind, so regressions show whatever else the machine does
# (issue 13; benches/README.md). For each fixture capture, runs
#   valgrind --tool=callgrind target/release/hlsd --source file:X --no-pace --listen 127.0.0.1:0
# once over the capture and once over COPIES concatenated copies of it, each until its
# "file ended" log line, then SIGTERM; (Ir(COPIES) - Ir(1)) / ((COPIES-1) * frames) removes
# start-up and shutdown. No HTTP client is connected (the serving side is benches/fanout.py's).
# Environment: COPIES (4), HLSD_BIN, HLSD_FIXTURES, OUT (target/bench/callgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HLSD_BIN:-target/release/hlsd}
FIX=${HLSD_FIXTURES:-../shared/fixtures}
COPIES=${COPIES:-4}
OUT=${OUT:-target/bench/callgrind}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind missing: infra/setup.sh --bench" >&2; exit 1; }

# run FILE TAG → prints total Ir
run() {
  local file=$1 tag=$2 log=$OUT/$2.log
  HLSD_LOG=info valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.out" "$BIN" \
    --listen 127.0.0.1:0 --source "file:$file" --no-pace $EXTRA >/dev/null 2>"$log" &
  local pid=$!
  for _ in $(seq 1 600); do
    grep -q 'file ended' "$log" && break
    kill -0 $pid 2>/dev/null || { echo "hlsd exited early, see $log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q 'file ended' "$log" || { kill $pid; echo "no 'file ended' in $log" >&2; exit 1; }
  kill -TERM $pid
  wait $pid || true
  grep -h '^summary:\|^totals:' "$OUT/$tag.out" | head -1 | awk '{print $2}'
}

printf '%-26s %8s %14s %14s %12s\n' fixture frames "Ir x1" "Ir x$COPIES" "Ir/frame"
for f in pi-720p30-inline.h264:293: pi-1080p25-raspivid.h264:116:--framerate\ 25; do
  IFS=: read -r name frames EXTRA <<<"$f"
  src=$FIX/$name
  [[ -f $src ]] || { echo "fixture $src missing" >&2; exit 1; }
  multi=$OUT/${name%.h264}-x$COPIES.h264
  for _ in $(seq 1 "$COPIES"); do cat "$src"; done >"$multi"
  one=$(run "$src" "${name%.h264}-x1")
  many=$(run "$multi" "${name%.h264}-x$COPIES")
  per=$(( (many - one) / ((COPIES - 1) * frames) ))
  printf '%-26s %8s %14s %14s %12s\n' "$name" "$frames" "$one" "$many" "$per"
done
echo "callgrind profiles: $OUT/*.out (callgrind_annotate FILE | head -40)"
