#!/usr/bin/env python3
"""Storage outputs bench: hlsd publishing to a local S3 server (moto, infra/setup.sh --test).

Three runs, all with target/release/hlsd and a moto server on a free loopback port:

1. delay      testsrc2 1280x720 30 fps with noise, x264 at 4 Mbit/s (exec source), `--output s3://bench/live`, DURATION seconds.
              One thread follows the origin with blocking reloads (`_HLS_msn=N`: answered the
              moment segment N is complete in the live window); another polls the store for the
              object `{run}-s{N}.m4s` (every 5 ms) and for the published media playlist. Printed:
              segment complete -> object readable in the store, and -> listed by the published
              playlist (p50/p90/max), plus the stored throughput at live rate.
2. throughput the 720p30 Pi capture from file, unpaced and looped (segments as fast as the
              machine cuts them), for DURATION seconds; stored MB/s and segments/s (uploads are
              the bottleneck: the queue drops what the store cannot take), upload latency p50.
3. memory     the same 4 Mbit/s source with the store DOWN (an endpoint where nothing listens) for
              DOWN_SECONDS (default 300, the acceptance text); VmRSS sampled every 5 s: start,
              max, end, and segments dropped. Then the store comes up and the time until the
              published playlist is readable again is printed.

Environment: DURATION (30), DOWN_SECONDS (300), CONCURRENCY (4), HLSD_BIN, FIXTURE.
Prints medians; exits 0 (benches measure, they do not gate).
"""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("HLSD_BIN", os.path.join(ROOT, "target", "release", "hlsd"))
DURATION = float(os.environ.get("DURATION", "30"))
DOWN = float(os.environ.get("DOWN_SECONDS", "300"))
CONCURRENCY = os.environ.get("CONCURRENCY", "4")
FIXTURE = os.environ.get(
    "FIXTURE",
    os.path.join(os.environ.get("HLSD_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")), "pi-720p30-inline.h264"),
)
# A real 4 Mbit/s stream: testsrc2 with noise (hard to compress) through x264 at 4 Mbit/s.
SOURCE_4M = ("exec:ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi "
             "-i testsrc2=size=1280x720:rate=30,noise=alls=30:allf=t -c:v libx264 -preset ultrafast "
             "-tune zerolatency -b:v 4M -maxrate 4M -bufsize 2M -g 30 -bf 0 -pix_fmt yuv420p -f h264 -")
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1", HLSD_LOG="warn")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(method, url, body=None, timeout=20, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return 0, b""


def start_moto(port):
    log = tempfile.TemporaryFile()
    p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("moto did not start (infra/setup.sh --test installs it)")


def bucket(endpoint, name):
    http("PUT", f"{endpoint}/{name}")
    policy = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
              f'"Action":"s3:GetObject","Resource":"arn:aws:s3:::{name}/*"}}]}}')
    http("PUT", f"{endpoint}/{name}?policy", policy.encode(), headers={"content-type": "application/json"})


def start_hlsd(args):
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=ENV, start_new_session=True, text=True)
    for line in p.stdout:
        m = re.search(r"player at (http://\S+)/", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, m.group(1)
    raise SystemExit("hlsd did not start")


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def metric_sum(text, name, contains=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and contains in line:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def hist_quantile(text, name, q):
    """PromQL-style quantile from cumulative buckets."""
    buckets = []
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket\{{.*le="([^"]+)"\}} (\S+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    buckets.sort()
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))] if v else float("nan")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------

def run_delay(endpoint):
    bucket(endpoint, "bench")
    hlsd, base = start_hlsd(["--source", SOURCE_4M, "--window", "6", "--output", "s3://bench/live",
                             "--s3-endpoint", endpoint])
    complete, readable, listed = {}, {}, {}
    stop_at = time.time() + DURATION
    status, text = http("GET", f"{base}/media.m3u8")
    run = re.search(r'URI="([a-z0-9]+)-', text.decode()).group(1) if status == 200 and b'URI="' in text else None
    while run is None:
        status, text = http("GET", f"{base}/media.m3u8")
        m = re.search(r'URI="([a-z0-9]+)-', text.decode())
        run = m.group(1) if m else None
        time.sleep(0.1)
    first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text.decode()).group(1)) + 2

    def origin():
        n = first
        while time.time() < stop_at:
            http("GET", f"{base}/media.m3u8?_HLS_msn={n}")
            complete.setdefault(n, time.monotonic())
            n += 1

    def store():
        n = first
        while time.time() < stop_at + 5:
            s, _ = http("GET", f"{endpoint}/bench/live/{run}-s{n}.m4s", timeout=5)
            if s == 200:
                readable[n] = time.monotonic()
                n += 1
            else:
                time.sleep(0.005)

    def playlist():
        while time.time() < stop_at + 5:
            s, body = http("GET", f"{endpoint}/bench/live/media.m3u8", timeout=5)
            now = time.monotonic()
            if s == 200:
                for m in re.finditer(rf"{run}-s(\d+)\.m4s", body.decode()):
                    listed.setdefault(int(m.group(1)), now)
            time.sleep(0.01)

    threads = [threading.Thread(target=f) for f in (origin, store, playlist)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = http("GET", f"{base}/metrics")[1].decode()
    stop(hlsd)
    d_obj = [readable[n] - complete[n] for n in complete if n in readable]
    d_pl = [listed[n] - complete[n] for n in complete if n in listed]
    stored = metric_sum(m, "hlsd_storage_bytes_total")
    media = metric_sum(m, "hlsd_media_bytes_total")
    print(f"delay ({DURATION:.0f} s, 720p30 4 Mbit/s, 1 s segments, {len(d_obj)} segments):")
    print(f"  segment complete -> object readable: p50 {1000*statistics.median(d_obj):.0f} ms, "
          f"p90 {1000*pct(d_obj, 90):.0f} ms, max {1000*max(d_obj):.0f} ms")
    print(f"  segment complete -> listed by the published playlist: p50 {1000*statistics.median(d_pl):.0f} ms, "
          f"p90 {1000*pct(d_pl, 90):.0f} ms, max {1000*max(d_pl):.0f} ms")
    print(f"  hlsd_storage_segment_delay_seconds p50 {1000*hist_quantile(m, 'hlsd_storage_segment_delay_seconds', 0.5):.0f} ms; "
          f"upload p50 {1000*hist_quantile(m, 'hlsd_storage_upload_seconds', 0.5):.0f} ms; "
          f"stored {stored/1e6:.1f} MB; stream {8*media/DURATION/1e6:.2f} Mbit/s")


def run_throughput(endpoint):
    if not os.path.exists(FIXTURE):
        print(f"throughput: skipped ({FIXTURE} missing)")
        return
    bucket(endpoint, "tput")
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'[[output]]\nurl = "s3://tput/x"\nendpoint = "{endpoint}"\nqueue = 200\nconcurrency = {CONCURRENCY}\n')
    cfg.close()
    hlsd, base = start_hlsd(["--source", f"file:{FIXTURE}", "--loop", "--no-pace", "--config", cfg.name])
    t0 = time.monotonic()
    time.sleep(DURATION)
    m = http("GET", f"{base}/metrics")[1].decode()
    el = time.monotonic() - t0
    stop(hlsd)
    os.unlink(cfg.name)
    stored = metric_sum(m, "hlsd_storage_bytes_total")
    puts = metric_sum(m, "hlsd_storage_requests_total", 'op="put",result="ok"')
    made = metric_sum(m, "hlsd_segments_total")
    dropped = metric_sum(m, "hlsd_storage_dropped_segments_total")
    print(f"throughput ({DURATION:.0f} s, Pi 720p30 capture unpaced, concurrency {CONCURRENCY}):")
    print(f"  stored {stored/1e6/el:.1f} MB/s ({8*stored/1e6/el:.0f} Mbit/s), {puts/el:.1f} puts/s; "
          f"{made/el:.0f} segments/s cut, {dropped:.0f} dropped by the bounded queue; "
          f"upload p50 {1000*hist_quantile(m, 'hlsd_storage_upload_seconds', 0.5):.0f} ms")


def run_memory():
    dead = free_port()
    endpoint = f"http://127.0.0.1:{dead}"
    hlsd, base = start_hlsd(["--source", SOURCE_4M, "--window", "6", "--output", "s3://down/live", "--s3-endpoint", endpoint])
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < DOWN:
        samples.append((time.monotonic() - t0, rss_kib(hlsd.pid)))
        time.sleep(5)
    m = http("GET", f"{base}/metrics")[1].decode()
    dropped = metric_sum(m, "hlsd_storage_dropped_segments_total")
    failed = metric_sum(m, "hlsd_storage_requests_total", 'result="failed"')
    queue = metric_sum(m, "hlsd_storage_queue_depth")
    media = metric_sum(m, "hlsd_media_bytes_total")
    # The store comes back.
    moto = start_moto(dead)
    bucket(endpoint, "down")
    up = time.monotonic()
    while time.monotonic() - up < 60:
        if http("GET", f"{endpoint}/down/live/media.m3u8", timeout=5)[0] == 200:
            break
        time.sleep(0.05)
    back = time.monotonic() - up
    stop(hlsd)
    os.killpg(moto.pid, signal.SIGKILL)
    rss = [r for _, r in samples]
    after30 = [r for t, r in samples if t >= 30] or rss
    print(f"memory (store down {DOWN:.0f} s, 720p30 at {8*media/DOWN/1e6:.2f} Mbit/s, queue 30):")
    print(f"  VmRSS at 10 s {samples[min(2, len(samples)-1)][1]/1024:.1f} MiB, max {max(rss)/1024:.1f} MiB, "
          f"after 30 s: min {min(after30)/1024:.1f} / max {max(after30)/1024:.1f} MiB, end {rss[-1]/1024:.1f} MiB")
    print(f"  {failed:.0f} failed requests, {dropped:.0f} segments dropped, queue depth {queue:.0f}; "
          f"store back -> playlist readable after {back:.1f} s")


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} missing: cargo build --release")
    port = free_port()
    moto = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        run_delay(endpoint)
        run_throughput(endpoint)
    finally:
        os.killpg(moto.pid, signal.SIGKILL)
    run_memory()


if __name__ == "__main__":
    main()
