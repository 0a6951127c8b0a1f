#!/usr/bin/env python3
"""Origin-added delay bench: last byte of a frame written to hlsd -> its part readable by a client.

Acceptance item: "origin-added delay (last byte of a frame read -> its part readable by a waiting
client) p50/p99, target p99 <= 5 ms". This is a bench, not a test: it exits 0 whatever the numbers
unless STRICT=1.

What it does, for each --idle-flush-ms value in IDLE_FLUSH (default "1,0.5"; 1 is hlsd's default):

  * starts the release binary: target/release/hlsd --listen 127.0.0.1:PORT --source stdin
    --part-duration 0.2 --segment-duration 1 --idle-flush-ms N
  * splits a real capture (FIXTURE, default shared/fixtures/pi-720p30-inline.h264) into access
    units (split before an AUD, or before a slice with first_mb_in_slice == 0, keeping preceding
    SPS/PPS/SEI with the following picture) and writes them to hlsd's stdin paced at FPS (30),
    ONE WHOLE ACCESS UNIT PER write(2), recording CLOCK_MONOTONIC right after each write returns
    ("last byte written"). The pipe is enlarged to 1 MiB so a write never blocks half-way.
    By default the capture is looped over its whole GOPs only (frames before its last IDR:
    240 of 293 frames), so every part holds 6 frames; FULL_FILE=1 loops all 293 frames, which
    adds a short part before each loop's first IDR (see "short parts" below).
  * a client in a separate process (no GIL sharing with the writer) reads media.m3u8, takes the
    EXT-X-PRELOAD-HINT URI (RUN-pN.m4s), fetches the already published parts p0..pN-1 (only to
    count their frames), then requests pN, pN+1, ... each as soon as the previous arrived: hlsd
    holds each request until the part is published. It records when the request was sent, when
    the response headers arrived and when the body was complete.
  * matching: part g holds frames [c_g, c_g + n_g) of the written sequence, where n_g is the
    sample_count of the part's trun box and c_g the sum of the previous parts' counts (hlsd
    drops nothing here: the capture starts with an IDR). The completing frame is the part's last
    one; delay = response time - that frame's write time. Only parts whose request was sent
    BEFORE the completing frame was written count (the client was really waiting), and only
    after WARMUP seconds; the measurement covers DURATION seconds.
  * also reads hlsd's own histogram hlsd_origin_delay_seconds (frame's last byte read -> part in
    the window) from /metrics at the start and end of the measurement, and prints the quantile
    estimate of the difference (linear interpolation inside buckets, like PromQL's
    histogram_quantile; bucket bounds 0.2/0.5/1/2/5/10 ms, so it is coarse).

Short parts: a part is published when its last frame arrives only if the segmenter knows it is
full (6 frames). A part cut short by an IDR (GOP not a multiple of 6 frames), or by a gap in the
arrival-stamped timeline (a frame that arrived late, e.g. the writer or hlsd was descheduled),
is published when the NEXT frame arrives, i.e. about one frame interval (33 ms) later. Those
are reported separately; with the default whole-GOP looping on a quiet machine there are none.

Environment: DURATION (s, default 30), WARMUP (s, default 2), IDLE_FLUSH (comma list, default
"1,0.5"), FPS (30), FIXTURE, FULL_FILE=1, HLSD_BIN (default target/release/hlsd), PORT (default: a
free one), BENCH_JSON (default target/bench/origin_delay.json), STRICT=1 (exit 1 when p99 > 5 ms
for the default idle flush), HLSD_LOG (passed through; hlsd's log goes to target/bench/),
NICE (e.g. -10: run the writer, the client and hlsd at that niceness, to keep concurrent builds
on a shared machine from dominating the tail; say so when reporting such numbers).
"""

import http.client
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F_SETPIPE_SZ = 1031
TARGET_P99_MS = 5.0


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# ---------------------------------------------------------------------------------------------
# Annex-B splitting


def nal_units(data: bytes):
    """Yields (start_of_start_code, nal_header_offset) for every NAL unit."""
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0 or j + 3 >= n:
            return
        start = j - 1 if j > 0 and data[j - 1] == 0 else j  # 4-byte start code
        yield start, j + 3
        i = j + 3


def split_access_units(data: bytes):
    """Returns [(au_bytes, is_idr)]: split before an AUD, SPS, PPS or SEI that follows a picture,
    or before a slice with first_mb_in_slice == 0 (first bit after the NAL header is 1) when the
    current AU already holds a picture; SPS/PPS/SEI stay with the following picture."""
    aus = []
    cur_start, has_vcl, idr = 0, False, False
    for start, h in nal_units(data):
        t = data[h] & 0x1F
        boundary = False
        if t in (1, 5):
            first_mb_zero = h + 1 < len(data) and data[h + 1] & 0x80
            boundary = has_vcl and bool(first_mb_zero)
        elif t in (6, 7, 8, 9) or 14 <= t <= 18:
            boundary = has_vcl
        if boundary:
            aus.append((data[cur_start:start], idr))
            cur_start, has_vcl, idr = start, False, False
        if t in (1, 5):
            has_vcl = True
            idr |= t == 5
    if has_vcl:
        aus.append((data[cur_start:], idr))
    return aus


# ---------------------------------------------------------------------------------------------
# stats


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def parse_histogram(text, name="hlsd_origin_delay_seconds"):
    """{le: cumulative count} (le as float, +Inf as inf), plus _count and _sum."""
    buckets, count, total = {}, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            m = re.search(r'le="([^"]+)"\}\s+(\S+)', line)
            if m:
                le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
                buckets[le] = float(m.group(2))
        elif line.startswith(name + "_count"):
            count = float(line.split()[-1])
        elif line.startswith(name + "_sum"):
            total = float(line.split()[-1])
    return buckets, count, total


def histogram_quantile(q, buckets):
    """PromQL-style estimate from cumulative buckets {le: count}."""
    les = sorted(buckets)
    if not les or buckets[les[-1]] == 0:
        return float("nan")
    rank = q * buckets[les[-1]]
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le  # above the highest finite bound
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return les[-1]


# ---------------------------------------------------------------------------------------------
# HTTP


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path, timeout=15.0):
        """Returns (status, body, t_sent, t_headers, t_body)."""
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                    self.conn.connect()
                    self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn.request("GET", path)
                t_sent = now_ns()
                resp = self.conn.getresponse()
                t_hdr = now_ns()
                body = resp.read()
                t_body = now_ns()
                return resp.status, body, t_sent, t_hdr, t_body
            except (ConnectionError, http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def trun_sample_count(body: bytes) -> int:
    i = body.find(b"trun")
    if i < 0:
        return 0
    return int.from_bytes(body[i + 8 : i + 12], "big")


def client_main(port, deadline_ns, out_q, writer_done):
    """Runs in its own process. Puts (records, error) on out_q. A record is
    (global, samples, t_sent, t_hdr, t_body, waited) with waited=False for catch-up fetches.
    Errors after the writer is done (hlsd ending, exiting) just end the loop."""
    records, err = [], None
    try:
        c = Client(port)
        while True:
            if now_ns() > deadline_ns:
                raise RuntimeError("the playlist never became ready")
            try:
                status, body, *_ = c.get("/media.m3u8")
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                break
            time.sleep(0.05)
        text = body.decode()
        m = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)-p(\d+)\.m4s"', text)
        if not m:
            raise RuntimeError("no EXT-X-PRELOAD-HINT in the playlist:\n" + text)
        run, first_hint = m.group(1), int(m.group(2))
        for g in range(first_hint):  # already published: only to count frames
            status, body, ts, th, tb = c.get(f"/{run}-p{g}.m4s")
            if status != 200:
                raise RuntimeError(f"part {g}: HTTP {status} (window too short?)")
            records.append((g, trun_sample_count(body), ts, th, tb, False))
        g = first_hint
        while now_ns() < deadline_ns:
            status, body, ts, th, tb = c.get(f"/{run}-p{g}.m4s")
            if status == 404:  # the stream ended (EXT-X-ENDLIST): nothing more will come
                break
            if status != 200:
                raise RuntimeError(f"hinted part {g}: HTTP {status}: {body[:200]!r}")
            records.append((g, trun_sample_count(body), ts, th, tb, True))
            g += 1
    except Exception as e:  # noqa: BLE001 - report anything to the parent
        if not writer_done.is_set():
            err = f"{type(e).__name__}: {e}"
    out_q.put((records, err))


def fetch_metrics(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        return text
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------------------------------------
# one run


def sleep_until(t_ns):
    while True:
        d = t_ns - now_ns()
        if d <= 0:
            return
        if d > 2_000_000:
            time.sleep((d - 1_000_000) / 1e9)
        elif d > 200_000:
            time.sleep(d / 2e9)
        # else spin for the last 0.2 ms


def run_one(binary, aus, idle_flush_ms, fps, duration, warmup, log_dir):
    port = int(os.environ.get("PORT") or free_port())
    log_path = os.path.join(log_dir, f"origin_delay_hlsd_idle{idle_flush_ms}.log")
    log = open(log_path, "w")
    cmd = [
        binary, "--listen", f"127.0.0.1:{port}", "--source", "stdin",
        "--part-duration", "0.2", "--segment-duration", "1",
        "--idle-flush-ms", str(idle_flush_ms),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log)
    try:
        import fcntl

        fcntl.fcntl(proc.stdin.fileno(), F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    fd = proc.stdin.fileno()
    period_ns = int(1e9 / fps)
    part_frames = round(0.2 * fps)
    n_frames = (int((warmup + duration) * fps) // part_frames + 1) * part_frames  # whole parts
    # wait for the listener
    t_wait = now_ns()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or now_ns() - t_wait > 10e9:
                raise RuntimeError(f"hlsd did not start; see {log_path}")
            time.sleep(0.02)

    # "spawn", not fork: a forked child would inherit the write end of hlsd's stdin pipe, and
    # hlsd would never see EOF (so never end the playlist).
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    writer_done = ctx.Event()
    t0 = now_ns() + 300_000_000
    deadline = t0 + int((warmup + duration + 3) * 1e9)
    client = ctx.Process(target=client_main, args=(port, deadline, q, writer_done), daemon=True)
    client.start()

    writes = []  # monotonic ns after each frame's write returned
    m_before = m_after = ""
    late_writes = 0
    for i in range(n_frames):
        sched = t0 + i * period_ns
        sleep_until(sched)
        if now_ns() - sched > period_ns // 2:
            late_writes += 1
        os.write(fd, aus[i % len(aus)][0])
        writes.append(now_ns())
        if i == int(warmup * fps):
            m_before = fetch_metrics(port)
    time.sleep(0.3)  # let the last part be published and fetched
    m_after = fetch_metrics(port)
    t_stop = now_ns()  # parts answered after this were not completed by a frame write
    writer_done.set()
    proc.stdin.close()  # EOF: hlsd ends the playlist; the client's hinted request gets 404
    try:
        records, err = q.get(timeout=20)
    except Exception:  # noqa: BLE001
        records, err = [], "client timed out"
    client.join(timeout=5)
    if client.is_alive():
        client.terminate()
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    if err:
        print(f"  client error: {err}", file=sys.stderr)

    # match parts to frames
    records.sort()
    start_measure = t0 + int(warmup * 1e9)
    first = 0
    full_hdr, full_body, short_hdr, skipped_not_waiting = [], [], [], 0
    per_part = []
    expected = 0
    for g, n, ts, th, tb, waited in records:
        if g != expected:
            err = (err or "") + f" part numbering gap at {g} (expected {expected})"
            break
        expected += 1
        last = first + n - 1
        first += n
        if n <= 0 or last >= len(writes):
            continue
        w = writes[last]
        if not waited or w < start_measure or th > t_stop:
            continue
        if ts >= w:
            skipped_not_waiting += 1
            continue
        d_hdr = (th - w) / 1e6
        d_body = (tb - w) / 1e6
        per_part.append({"part": g, "frames": n, "last_frame": last, "hdr_ms": d_hdr, "body_ms": d_body})
        if n >= part_frames:
            full_hdr.append(d_hdr)
            full_body.append(d_body)
        else:
            short_hdr.append(d_hdr)
    frames_in_parts = first
    b0, c0, s0 = parse_histogram(m_before)
    b1, c1, s1 = parse_histogram(m_after)
    delta = {le: b1.get(le, 0) - b0.get(le, 0) for le in b1}
    prom = {
        "count": c1 - c0,
        "mean_ms": ((s1 - s0) / (c1 - c0) * 1e3) if c1 > c0 else float("nan"),
        "p50_ms": histogram_quantile(0.5, delta) * 1e3,
        "p99_ms": histogram_quantile(0.99, delta) * 1e3,
        "buckets": {("+Inf" if le == float("inf") else f"{le*1e3:g}ms"): int(v) for le, v in sorted(delta.items())},
    }
    return {
        "idle_flush_ms": idle_flush_ms,
        "frames_written": len(writes),
        "frames_in_parts": frames_in_parts,
        "late_writes": late_writes,
        "parts_measured": len(full_hdr),
        "parts_skipped_not_waiting": skipped_not_waiting,
        "short_parts": len(short_hdr),
        "headers_ms": summarize(full_hdr),
        "body_ms": summarize(full_body),
        "short_parts_headers_ms": summarize(short_hdr),
        "prometheus": prom,
        "error": err,
        "per_part": per_part,
    }


def summarize(vals):
    s = sorted(vals)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "min": s[0],
        "p50": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "max": s[-1],
    }


def fmt(s):
    if not s.get("n"):
        return "n=0"
    return "n={n}  p50={p50:.2f}  p90={p90:.2f}  p99={p99:.2f}  min={min:.2f}  max={max:.2f} ms".format(**s)


def main():
    binary = os.environ.get("HLSD_BIN", os.path.join(REPO, "target", "release", "hlsd"))
    fixture = os.environ.get(
        "FIXTURE", os.path.join(os.path.dirname(REPO), "shared", "fixtures", "pi-720p30-inline.h264")
    )
    if not os.path.exists(fixture):
        fixture = "/work/shared/fixtures/pi-720p30-inline.h264"
    duration = float(os.environ.get("DURATION", "30"))
    warmup = float(os.environ.get("WARMUP", "2"))
    fps = float(os.environ.get("FPS", "30"))
    flushes = [float(x) for x in os.environ.get("IDLE_FLUSH", "1,0.5").split(",") if x.strip()]
    out_json = os.environ.get("BENCH_JSON", os.path.join(REPO, "target", "bench", "origin_delay.json"))
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} not found: run `cargo build --release` first (or set HLSD_BIN)")

    if os.environ.get("NICE"):
        # hlsd and the client process inherit it: a way to approximate an idle machine on a
        # shared one (negative values need root).
        os.nice(int(os.environ["NICE"]))
    data = open(fixture, "rb").read()
    aus = split_access_units(data)
    if os.environ.get("FULL_FILE") != "1":
        last_idr = max(i for i, (_, idr) in enumerate(aus) if idr)
        if last_idr > 0:
            aus = aus[:last_idr]
    if not aus or not aus[0][1]:
        sys.exit("the capture must start with an IDR access unit")
    print(
        f"origin_delay: {os.path.basename(fixture)}: looping {len(aus)} access units "
        f"({sum(len(a) for a, _ in aus) / len(aus) / 1e3:.1f} kB avg) at {fps:g} fps, "
        f"one write per AU; warmup {warmup:g} s, measure {duration:g} s; load avg {os.getloadavg()[0]:.2f}"
        f"{'; niceness ' + str(os.nice(0)) if os.environ.get('NICE') else ''}"
    )
    results = []
    for fl in flushes:
        r = run_one(binary, aus, fl, fps, duration, warmup, os.path.dirname(out_json))
        results.append(r)
        p = r["prometheus"]
        print(f"\n--idle-flush-ms {fl}{'  (default)' if fl == 1 else ''}")
        print(f"  frames written {r['frames_written']} (late writes {r['late_writes']}), in parts {r['frames_in_parts']}")
        print(f"  part readable, response headers - last byte written: {fmt(r['headers_ms'])}")
        print(f"  part readable, body complete    - last byte written: {fmt(r['body_ms'])}")
        if r["short_parts"]:
            print(f"  short parts (< {round(0.2 * fps)} frames; published when the next frame arrives): {fmt(r['short_parts_headers_ms'])}")
        if r["parts_skipped_not_waiting"]:
            print(f"  parts not counted (client was not waiting yet): {r['parts_skipped_not_waiting']}")
        print(
            f"  hlsd_origin_delay_seconds (last byte read -> part in window), n={p['count']:.0f}: "
            f"p50~{p['p50_ms']:.2f} ms  p99~{p['p99_ms']:.2f} ms  mean {p['mean_ms']:.2f} ms"
        )
        print(f"    buckets: {p['buckets']}")
        if r["error"]:
            print(f"  ERROR: {r['error']}")
    with open(out_json, "w") as f:
        json.dump({"fixture": fixture, "duration": duration, "fps": fps, "results": results}, f, indent=1)
    print(f"\nper-part data: {out_json}")
    if os.environ.get("STRICT") == "1":
        default = next((r for r in results if r["idle_flush_ms"] == 3), results[0])
        p99 = default["headers_ms"].get("p99", float("inf"))
        if not p99 <= TARGET_P99_MS:
            print(f"FAIL: p99 {p99:.2f} ms > {TARGET_P99_MS} ms")
            sys.exit(1)


if __name__ == "__main__":
    main()
