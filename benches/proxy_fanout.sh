#!/usr/bin/env bash
# 500 simulated LL-HLS viewers (hlsd-load) through the nginx cache and through Varnish, both
# from infra/ (nginx without TLS: hlsd-load speaks plain HTTP), against a testsrc hlsd. Prints
# hlsd-load's report and the requests that reached hlsd (from its /metrics) for each.
#   benches/proxy_fanout.sh            # VIEWERS=500 SECONDS_=30 RAMP=5 PROFILE=debug
set -euo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${VIEWERS:-500} SECS=${SECONDS_:-30} RAMP=${RAMP:-5} PROFILE=${PROFILE:-debug}
BIN=target/$PROFILE
[[ -x $BIN/hlsd && -x $BIN/hlsd-load ]] || { echo "build first: cargo build --bins" >&2; exit 1; }
W=$(mktemp -d); chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; sleep 1; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HP=$(port) NP=$(port) VP=$(port)
setsid "$BIN/hlsd" --listen "127.0.0.1:$HP" --width 320 --height 180 --bitrate 300000 >"$W/hlsd.log" 2>&1 & pids+=($!)
infra/nginx/render.sh "127.0.0.1:$NP" x x "127.0.0.1:$HP" "$W/cache" /cam | sed -e 's/ ssl http2;/;/' -e '/ssl_/d' >"$W/hlsd.conf"
cat >"$W/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $W/nginx.pid; error_log $W/error.log warn;
worker_rlimit_nofile 8192; events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/t1; proxy_temp_path $W/t2; fastcgi_temp_path $W/t3;
  uwsgi_temp_path $W/t4; scgi_temp_path $W/t5; include $W/hlsd.conf; }
CONF
sed -e "s/@HLSD_HOST@/127.0.0.1/; s/@HLSD_PORT@/$HP/; s|@PREFIX@|/cam|g" infra/varnish/hlsd.vcl >"$W/hlsd.vcl"
setsid nginx -p "$W" -c "$W/nginx.conf" >"$W/nginx.out" 2>&1 & pids+=($!)
setsid varnishd -F -a "127.0.0.1:$VP" -n "$W/vn" -f "$W/hlsd.vcl" -s malloc,64m -T none >"$W/varnish.out" 2>&1 & pids+=($!)
wait_ok() { for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
wait_ok "http://127.0.0.1:$HP/stream.m3u8"
wait_ok "http://127.0.0.1:$NP/cam/stream.m3u8"
wait_ok "http://127.0.0.1:$VP/cam/stream.m3u8"
sleep 3
counts() { curl -s "http://127.0.0.1:$HP/metrics" | grep '^hlsd_http_requests_total'; }
for name in nginx:$NP varnish:$VP; do
  counts >"$W/before"
  nice -n 10 "$BIN/hlsd-load" "http://127.0.0.1:${name#*:}/cam/stream.m3u8" -n "$VIEWERS" --ramp "$RAMP" -d "$SECS" --json >"$W/report.json"
  counts >"$W/after"
  echo "== ${name%%:*}: $(cat "$W/report.json")"
  python3 - "$W/before" "$W/after" <<'PY'
import sys, re
def load(f):
    d = {}
    for l in open(f):
        m = re.match(r'hlsd_http_requests_total\{route="([^"]+)",status="(\d+)"\} (\S+)', l)
        if m: d[m.group(1)] = d.get(m.group(1), 0) + float(m.group(3))
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
print("   at hlsd:", {k: int(a[k] - b.get(k, 0)) for k in a if a[k] - b.get(k, 0) and k != "metrics"})
PY
done
