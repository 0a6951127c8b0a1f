#!/usr/bin/env bash
# Coverage-guided fuzzing of one hlsd parser with libFuzzer, on the stable toolchain.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   fuzz/run.sh list                      # the targets
#
# Targets (bodies in src/fuzzing/): au_parser, sps, http_request, config_toml, specs, ts_demux.
# Builds fuzz/ (its own workspace; target dir fuzz/target) with the sanitizer-coverage passes
# that cargo-fuzz would use, plus debug assertions and overflow checks, but without -Zsanitizer
# (that needs nightly; safe Rust needs no ASan). libfuzzer-sys compiles libFuzzer's C++ itself
# (with `c++`; infra/setup.sh --fuzz installs g++ when there is none). The corpus (fuzz/corpus/TARGET, not committed) starts
# from fuzz/seeds/TARGET and fuzz/regressions/TARGET; crashes land in fuzz/artifacts/TARGET/.
# Prints libFuzzer's final stats (executions, exec/s, coverage) and exits 1 on a finding.
# Environment: JOBS (cargo -j, default 1), NICE (default 10), MAX_LEN (per-target default).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
targets="au_parser sps http_request config_toml specs ts_demux"
if [[ "${1:-}" == "list" ]]; then echo "$targets"; exit 0; fi
target="${1:?usage: fuzz/run.sh TARGET SECONDS (targets: $targets)}"
secs="${2:?usage: fuzz/run.sh TARGET SECONDS}"
shift 2
[[ " $targets " == *" $target "* ]] || { echo "unknown target $target (targets: $targets)" >&2; exit 2; }
command -v c++ >/dev/null || "$here/../infra/setup.sh" --fuzz
command -v c++ >/dev/null || { echo "fuzz/run.sh: a C++ compiler is needed (apt-get install g++)" >&2; exit 2; }

triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps RUSTFLAGS off build scripts and proc macros (they must not be instrumented).
nice -n "${NICE:-10}" cargo build --manifest-path "$here/Cargo.toml" --release --target "$triple" \
    -j "${JOBS:-1}" --bin "$target"
bin="$here/target/$triple/release/$target"

case "$target" in
    au_parser | ts_demux) max_len=${MAX_LEN:-65536} ;;
    sps) max_len=${MAX_LEN:-512} ;;
    *) max_len=${MAX_LEN:-4096} ;;
esac
corpus="$here/corpus/$target"
artifacts="$here/artifacts/$target"
mkdir -p "$corpus" "$artifacts"
dict=()
[[ -f "$here/dict/$target.dict" ]] && dict=(-dict="$here/dict/$target.dict")
seeds=("$here/seeds/$target")
[[ -d "$here/regressions/$target" ]] && seeds+=("$here/regressions/$target")

echo "fuzz/run.sh: $target for ${secs}s (max_len $max_len), corpus $corpus"
set +e
nice -n "${NICE:-10}" "$bin" "$corpus" "${seeds[@]}" "${dict[@]}" \
    -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" 2>&1 | tee "$here/$target.log" \
    | grep -E --line-buffered "INITED|DONE|NEW_FUNC|pulse|ERROR|panicked|SUMMARY|Done|stat::|^==|^thread" | grep -v NEW_FUNC
rc=${PIPESTATUS[0]}
set -e
echo "fuzz/run.sh: $target exit $rc; corpus $(ls "$corpus" | wc -l) files; artifacts: $(ls "$artifacts" | wc -l)"
grep -E "^#[0-9]+ +(DONE|pulse)" "$here/$target.log" | tail -1 || true
exit "$rc"
