#!/usr/bin/env bash
# Offline segmenting bench: `hlsd segment` vs `ffmpeg -c copy -f hls -hls_segment_type fmp4`.
#
# Acceptance item: on a 2-minute 1080p30 4 Mbit/s H.264 stream, hlsd uses at least 3x less CPU
# time (user+sys) than ffmpeg's stream-copy HLS muxer, and peaks at <= 16 MiB RSS.
# This is a bench, not a test: it exits 0 whatever the numbers unless STRICT=1.
#
#   * generates once (cached in target/bench-media/) a 120 s 1920x1080 30 fps ~4 Mbit/s H.264
#     Annex-B file with libx264 (-preset veryfast -b:v 4M -maxrate 4M -bufsize 8M -g 30 -bf 0),
#     from testsrc2 with light temporal noise so the encoder really spends ~4 Mbit/s, and
#     -sc_threshold 0 so there is exactly one IDR per second (with the noise, x264's scene-cut
#     detection otherwise inserts an IDR every 3-7 frames);
#   * runs each tool RUNS times (default 5), alternating hlsd/ffmpeg, each into a fresh output
#     directory, under /usr/bin/time (max RSS, %M; the script installs Debian's `time` package
#     if it is missing), measuring user and sys CPU time from wait4() with microsecond resolution
#     (see measure() below; TIMER=gnu takes them from /usr/bin/time -f '%U %S' instead, 10 ms);
#   * prints per-run numbers, the medians, and the CPU-time ratio ffmpeg/hlsd.
#
# Commands timed:
#   hlsd --segment-duration 1 segment INPUT OUT1   (the flag is not accepted after `segment`)
#   ffmpeg -hide_banner -loglevel error -i INPUT -c copy -f hls -hls_time 1 \
#          -hls_segment_type fmp4 -hls_playlist_type vod OUT2/stream.m3u8
# Where the outputs go matters. By default they go to tmpfs (/dev/shm), which leaves the CPU
# work of the tools themselves: parsing, muxing, copying bytes in and out of the kernel. On a
# disk, two more costs come in, both charged as sys time: hlsd fdatasync()s every file it writes
# (atomic writes: tmp file, fsync, rename) and ffmpeg does not (its dirty pages are written back
# by kernel threads, charged to nobody); and creating files on a busy ext4 costs an
# amount of sys time that depends on what OTHER processes deleted recently (ext4
# recently_deleted() when the fs has no journal, as on the dev VMs). Numbers on disk are therefore
# noisy and much lower: report both (OUT=target/segbench for disk).
#
# FORMAT=ts (issue 11): the input is instead an MPEG-TS of the same video plus a 48 kHz stereo
# AAC tone (ffmpeg -c:a aac -b:a 128k), written by ffmpeg -f mpegts; both tools read that file.
# hlsd does not mux audio yet, so it writes the video only while ffmpeg -c copy writes both
# tracks (with -bsf:a aac_adtstoasc, which its fMP4 muxer needs for ADTS): the comparison favours
# hlsd by the audio's share of the work (~3% of the bytes).
#
# Environment: FORMAT (h264 | ts; default h264), RUNS (5), TIMER (rusage | gnu; default rusage), HLSD_BIN (target/release/hlsd), MEDIA_DIR (target/bench-media),
# DURATION (120 s of media), OUT (scratch dir for the outputs; default a new dir in /dev/shm,
# removed at the end; set OUT=target/segbench to write to disk instead, see below),
# STRICT=1 (exit 1 when a target is missed).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-5}"
HLSD_BIN="${HLSD_BIN:-$REPO/target/release/hlsd}"
MEDIA_DIR="${MEDIA_DIR:-$REPO/target/bench-media}"
DURATION="${DURATION:-120}"
TIMER="${TIMER:-rusage}"
FORMAT="${FORMAT:-h264}"
INPUT="$MEDIA_DIR/testsrc2-1080p30-4M-gop30-${DURATION}s.h264"
TS_INPUT="$MEDIA_DIR/testsrc2-1080p30-4M-gop30-aac-${DURATION}s.ts"

if [ ! -x "$HLSD_BIN" ]; then
  echo "segment_vs_ffmpeg: $HLSD_BIN not found: run 'cargo build --release' first" >&2
  exit 2
fi
command -v ffmpeg >/dev/null || { echo "segment_vs_ffmpeg: ffmpeg not found (apt-get install -y ffmpeg)" >&2; exit 2; }
if [ "$TIMER" = rusage ] && ! command -v python3 >/dev/null; then TIMER=gnu; fi
if [ ! -x /usr/bin/time ]; then
  echo "segment_vs_ffmpeg: installing GNU time (Debian package 'time')" >&2
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; })
  else
    (sudo apt-get install -y time >/dev/null 2>&1 || { sudo apt-get update >/dev/null && sudo apt-get install -y time >/dev/null; })
  fi
fi

mkdir -p "$MEDIA_DIR"
if [ ! -s "$INPUT" ]; then
  echo "segment_vs_ffmpeg: generating $INPUT (${DURATION} s 1080p30 ~4 Mbit/s; takes a few minutes on 2 cores)..." >&2
  start=$(date +%s)
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t" -t "$DURATION" \
    -c:v libx264 -preset veryfast -b:v 4M -maxrate 4M -bufsize 8M -g 30 -sc_threshold 0 -bf 0 -pix_fmt yuv420p \
    -f h264 "$INPUT.tmp"
  mv "$INPUT.tmp" "$INPUT"
  echo "segment_vs_ffmpeg: generated in $(( $(date +%s) - start )) s" >&2
fi
if [ "$FORMAT" = ts ]; then
  if [ ! -s "$TS_INPUT" ]; then
    echo "segment_vs_ffmpeg: generating $TS_INPUT (the same video + AAC tone, remuxed)..." >&2
    ffmpeg -hide_banner -loglevel error -y -framerate 30 -i "$INPUT" -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
      -t "$DURATION" -map 0:v -map 1:a -c:v copy -c:a aac -ac 2 -b:a 128k -f mpegts "$TS_INPUT.tmp"
    mv "$TS_INPUT.tmp" "$TS_INPUT"
  fi
  INPUT="$TS_INPUT"
fi
# ffmpeg's fMP4 HLS muxer needs ADTS turned into raw AAC (it refuses ADTS under -c copy).
FF_BSF=()
[ "$FORMAT" = ts ] && FF_BSF=(-bsf:a aac_adtstoasc)
size=$(stat -c %s "$INPUT")
echo "input: $INPUT ($(awk -v s="$size" -v d="$DURATION" 'BEGIN{printf "%.1f MB, %.2f Mbit/s", s/1e6, s*8/d/1e6}'))"
cat "$INPUT" >/dev/null # page cache: both tools read from memory

OUT="${OUT:-}"
cleanup_out=0
if [ -z "$OUT" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then OUT="$(mktemp -d -p /dev/shm segbench.XXXXXX)"; else OUT="$(mktemp -d)"; fi
  cleanup_out=1
else
  mkdir -p "$OUT"
fi
echo "output dir: $OUT ($(df --output=fstype "$OUT" | tail -n1 | tr -d ' '))"
trap '[ "$cleanup_out" = 1 ] && rm -rf "$OUT"' EXIT
res_hlsd="$OUT/hlsd.txt"; res_ff="$OUT/ffmpeg.txt"
: >"$res_hlsd"; : >"$res_ff"

# measure RESULT_FILE STDERR_LOG CMD... : appends "user_s sys_s maxrss_kib" for CMD.
# Max RSS comes from /usr/bin/time's %M. CPU time comes from the same wait4() rusage, but
# /usr/bin/time prints it with 10 ms resolution (coarse next to hlsd's ~0.2 s), so when python3 is
# there it spawns /usr/bin/time and reads the rusage of that child with microsecond resolution
# (it includes the ~1 ms of /usr/bin/time itself, for both tools alike). The RSS cannot come from
# python: Linux carries the RSS high-water mark across execve, so anything spawned from the
# interpreter would report at least its ~13 MiB.
measure() {
  local res="$1" log="$2"; shift 2
  if [ "$TIMER" = gnu ]; then
    /usr/bin/time -f '%U %S %M' -o "$OUT/t" "$@" 2>"$log" || return 1
    tail -n1 "$OUT/t" >>"$res"
  else
    python3 -c '
import os, sys
err = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
argv = ["/usr/bin/time", "-f", "%M", "-o", sys.argv[2]] + sys.argv[3:]
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, err, 2)])
_, status, ru = os.wait4(pid, 0)
rss = open(sys.argv[2]).read().split()[-1]
print(f"{ru.ru_utime:.4f} {ru.ru_stime:.4f} {rss}")
sys.exit(os.waitstatus_to_exitcode(status))' "$log" "$OUT/t" "$@" >>"$res" || return 1
  fi
}
# Every run writes to a new directory and nothing is deleted until the end: deleting ~120 files
# right before creating ~120 new ones makes ext4's inode allocator (recently_deleted()) cost both
# tools more sys time than their own work.
run_hlsd() {
  local dir="$OUT/hlsd-$1"; last_hlsd="$dir"
  measure "$res_hlsd" "$OUT/hlsd.log" "$HLSD_BIN" --segment-duration 1 segment "$INPUT" "$dir" \
    || { echo "hlsd failed:"; cat "$OUT/hlsd.log"; exit 1; }
}
run_ffmpeg() {
  local dir="$OUT/ffmpeg-$1"; last_ffmpeg="$dir"
  mkdir -p "$dir"
  measure "$res_ff" "$OUT/ffmpeg.log" ffmpeg -hide_banner -loglevel error -i "$INPUT" -c copy "${FF_BSF[@]}" -f hls -hls_time 1 \
    -hls_segment_type fmp4 -hls_playlist_type vod "$dir/stream.m3u8" \
    || { echo "ffmpeg failed:"; cat "$OUT/ffmpeg.log"; exit 1; }
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then run_hlsd "$i"; run_ffmpeg "$i"; else run_ffmpeg "$i"; run_hlsd "$i"; fi
  printf 'run %d: hlsd  user %s sys %s maxrss %s KiB | ffmpeg user %s sys %s maxrss %s KiB\n' "$i" \
    $(tail -n1 "$res_hlsd") $(tail -n1 "$res_ff")
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

hsegs=$(ls "$last_hlsd" | grep -c '\.m4s$' || true)
fsegs=$(ls "$last_ffmpeg" | grep -c '\.m4s$' || true)
hbytes=$(du -sb "$last_hlsd" | cut -f1); fbytes=$(du -sb "$last_ffmpeg" | cut -f1)
echo "output: hlsd $hsegs segments, $hbytes bytes; ffmpeg $fsegs segments, $fbytes bytes"

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
h_cpu=$(awk '{print $1+$2}' "$res_hlsd" | median); f_cpu=$(awk '{print $1+$2}' "$res_ff" | median)
h_usr=$(awk '{print $1}' "$res_hlsd" | median); h_sys=$(awk '{print $2}' "$res_hlsd" | median)
f_usr=$(awk '{print $1}' "$res_ff" | median); f_sys=$(awk '{print $2}' "$res_ff" | median)
h_rss=$(awk '{print $3}' "$res_hlsd" | median); f_rss=$(awk '{print $3}' "$res_ff" | median)
h_rss_max=$(awk '{print $3}' "$res_hlsd" | sort -n | tail -n1)
h_min=$(awk '{print $1+$2}' "$res_hlsd" | sort -g | head -n1); f_min=$(awk '{print $1+$2}' "$res_ff" | sort -g | head -n1)
ratio=$(awk -v f="$f_cpu" -v h="$h_cpu" 'BEGIN{ if (h > 0) printf "%.2f", f/h; else print "inf" }')
ratio_min=$(awk -v f="$f_min" -v h="$h_min" 'BEGIN{ if (h > 0) printf "%.2f", f/h; else print "inf" }')
echo
if [ "$TIMER" = gnu ]; then res_note="/usr/bin/time, 10 ms resolution"; else res_note="wait4 rusage, 1 us resolution; max RSS from /usr/bin/time"; fi
echo "medians over $RUNS runs (CPU = user+sys; $res_note):"
printf '  hlsd   CPU %.3f s (user %.3f, sys %.3f)  max RSS %.1f MiB (worst run %.1f MiB)\n' "$h_cpu" "$h_usr" "$h_sys" \
  "$(awk -v k="$h_rss" 'BEGIN{print k/1024}')" "$(awk -v k="$h_rss_max" 'BEGIN{print k/1024}')"
printf '  ffmpeg CPU %.3f s (user %.3f, sys %.3f)  max RSS %.1f MiB\n' "$f_cpu" "$f_usr" "$f_sys" \
  "$(awk -v k="$f_rss" 'BEGIN{print k/1024}')"
echo "  CPU time ratio ffmpeg/hlsd: ${ratio}x of the medians (target >= 3x), ${ratio_min}x of the fastest runs ($f_min s / $h_min s)"
echo "  hlsd peak RSS target <= 16 MiB"

if [ "${STRICT:-0}" = 1 ]; then
  ok=$(awk -v r="$ratio" -v m="$h_rss_max" 'BEGIN{print (r >= 3 && m <= 16384) ? 1 : 0}')
  [ "$ok" = 1 ] || { echo "FAIL: target missed"; exit 1; }
fi
