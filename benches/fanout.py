#!/usr/bin/env python3
"""Fan-out and memory of hlsd under simulated LL-HLS viewers (issue 13; benches/README.md).

For each SOURCE (default: the looped 1080p Pi capture, then testsrc) starts
target/release/hlsd on a free loopback port and measures:
  - idle RSS (listening, before the first part) and RSS with the stream at the default window
    (after WARMUP seconds);
  - per step N in STEPS: target/release/hlsd-load -n N (LL, HTTP/1.1 unless HTTP=2) with RAMP and
    DURATION; hlsd's CPU seconds (utime+stime of /proc/PID/stat) over the measured window, its
    peak VmRSS sampled every 0.1 s during the step, the generator's report (p50/p99 part
    lateness, errors, Mbit/s) and the generator's own CPU seconds (whole run, ramp included); stepping stops at the first step whose p99 exceeds one part
    (PART ms) or that has errors;
  - RSS per LL viewer: (peak RSS of the step - RSS just before it) / N;
  - RSS per 1,000 idle keep-alive connections, on a fresh hlsd: IDLE_CONNS sockets that each
    made one request (GET /healthz) and stay open.
The environment is passed on to hlsd (e.g. MALLOC_ARENA_MAX=2 to try glibc's arena limit).
Prints one table per source and a JSON line per step (BENCH_JSON, default target/bench/fanout.json).
Exit 0 whatever the numbers (STRICT=1: 1 when 3,000 viewers miss p99 < PART).

Environment: STEPS (300,1000,2000,3000,5000), SOURCES (file1080,testsrc), DURATION (15),
RAMP (10), WARMUP (5), HTTP (1), PART (200), IDLE_CONNS (1000), THREADS (generator, 2),
HLSD_BIN, LOAD_BIN, FIXTURE (1080p capture), HLSD_ARGS (extra hlsd flags), NICE (10: both
processes run at this niceness, the machine being shared).
"""
import json, os, re, socket, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HLSD = os.environ.get("HLSD_BIN", os.path.join(ROOT, "target/release/hlsd"))
LOAD = os.environ.get("LOAD_BIN", os.path.join(ROOT, "target/release/hlsd-load"))
FIX_DIR = os.environ.get("HLSD_FIXTURES", os.path.join(ROOT, "../shared/fixtures"))
FIXTURE = os.environ.get("FIXTURE", os.path.join(FIX_DIR, "pi-1080p25-raspivid.h264"))
STEPS = [int(x) for x in os.environ.get("STEPS", "300,1000,2000,3000,5000").split(",")]
SOURCES = os.environ.get("SOURCES", "file1080,testsrc").split(",")
DURATION = float(os.environ.get("DURATION", "15"))
RAMP = float(os.environ.get("RAMP", "10"))
WARMUP = float(os.environ.get("WARMUP", "5"))
HTTP = os.environ.get("HTTP", "1")
PART = float(os.environ.get("PART", "200"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "1000"))
THREADS = os.environ.get("THREADS", "2")
NICE = os.environ.get("NICE", "10")
OUT = os.environ.get("BENCH_JSON", os.path.join(ROOT, "target/bench/fanout.json"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_kib(pid, key="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def start_hlsd(source, extra=()):
    port = free_port()
    args = ["nice", "-n", NICE, HLSD, "--listen", f"127.0.0.1:{port}", "--max-connections", "19000",
            "--max-held-requests", "30000"]
    if source == "file1080":
        args += ["--source", f"file:{FIXTURE}", "--loop", "--framerate", "25"]
    else:
        args += ["--source", "testsrc"]
    args += list(extra) + os.environ.get("HLSD_ARGS", "").split()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(OUT + f".{source}.log", "w"), text=True)
    deadline = time.time() + 30
    for line in p.stdout:
        if "player at" in line:
            break
        if time.time() > deadline:
            raise SystemExit("hlsd did not start")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, port


def wait_playlist(port, timeout=30):
    import urllib.request
    end = time.time() + timeout
    while time.time() < end:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.m3u8", timeout=5).read()
            if b"STREAM-INF" in body:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit("no playlist")


def idle_conns(pid, port, n):
    before = rss_kib(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    for s in socks:
        s.settimeout(5)
        s.recv(4096)
    time.sleep(1)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    return (after - before) / n * 1000


def step(pid, port, n):
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.1)
    t = threading.Thread(target=sample)
    t.start()
    cmd = ["nice", "-n", NICE, LOAD, f"http://127.0.0.1:{port}/stream.m3u8", "-n", str(n), "--ramp", str(RAMP),
           "-d", str(DURATION), "--http", HTTP, "--threads", THREADS, "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    time.sleep(RAMP)
    c0 = cpu_s(pid)
    out = p.stdout.read()
    c1 = cpu_s(pid)
    _, _, ru = os.wait4(p.pid, 0)  # `nice` execs the generator: same pid
    p.returncode = 0
    stop.set()
    t.join()
    r = json.loads(out)
    r["generator_cpu_s"] = ru.ru_utime + ru.ru_stime
    return r, c1 - c0, peak[0]


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; steps {STEPS}; ramp {RAMP} s, "
          f"measured {DURATION} s, http {HTTP}")
    results = []
    missed = False
    for source in SOURCES:
        p, port = start_hlsd(source)
        try:
            idle = rss_kib(p.pid)
            wait_playlist(port)
            time.sleep(WARMUP)
            c0 = cpu_s(p.pid)
            time.sleep(2)
            base_cpu = (cpu_s(p.pid) - c0) / 2
            stream = rss_kib(p.pid)
            print(f"\n[{source}] idle RSS {idle/1024:.1f} MiB, with stream {stream/1024:.1f} MiB, "
                  f"ingest CPU {base_cpu*100:.1f}% of a core")
            print(f"{'viewers':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'Mbit/s':>8} "
                  f"{'hlsd CPU s':>10} {'CPU %':>6} {'gen CPU s':>9} {'peak MiB':>9} {'KiB/viewer':>10} {'load1':>6}")
            for n in STEPS:
                before = rss_kib(p.pid)
                r, cpu, peak = step(p.pid, port, n)
                lat = r["part_lateness"]
                per_viewer = (peak - before) / n
                row = dict(source=source, viewers=n, p50=lat["p50_ms"], p99=lat["p99_ms"], max=lat["max_ms"],
                           samples=lat["count"], errors=r["errors"], mbit=r["mbit_per_s"], cpu_s=cpu,
                           cpu_pct=cpu / r["seconds"] * 100, peak_kib=peak, stream_kib=stream, idle_kib=idle,
                           generator_cpu_s=r["generator_cpu_s"], kib_per_viewer=per_viewer, load1=os.getloadavg()[0])
                results.append(row)
                print(f"{n:>8} {lat['p50_ms']:>8.1f} {lat['p99_ms']:>8.1f} {lat['max_ms']:>8.1f} "
                      f"{r['errors_total']:>7} {r['mbit_per_s']:>8.1f} {cpu:>10.2f} {row['cpu_pct']:>6.0f} {r['generator_cpu_s']:>9.1f} "
                      f"{peak/1024:>9.1f} {per_viewer:>10.1f} {row['load1']:>6.2f}", flush=True)
                if n == 3000 and (lat["p99_ms"] >= PART or r["errors_total"]):
                    missed = True
                if lat["p99_ms"] > PART or r["errors_total"] or lat["count"] == 0:
                    print(f"  stop: p99 > {PART:.0f} ms or errors ({r['errors']})")
                    break
        finally:
            p.terminate()
            p.wait(10)
    # Idle keep-alive connections on a fresh process (freed viewer memory would hide them).
    p, port = start_hlsd(SOURCES[0])
    try:
        wait_playlist(port)
        time.sleep(WARMUP)
        per_idle = idle_conns(p.pid, port, IDLE_CONNS)
        print(f"\n[{SOURCES[0]}] +{per_idle/1024:.2f} MiB per 1,000 idle keep-alive connections ({IDLE_CONNS} opened)")
        results.append(dict(source=SOURCES[0], idle_conn_kib_per_1000=per_idle))
    finally:
        p.terminate()
        p.wait(10)
    with open(OUT, "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    print(f"\nper-step data: {OUT}")
    if os.environ.get("STRICT") == "1" and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
