#!/usr/bin/env python3
"""hlsd against nginx (sendfile) serving the same stream, in the same run (issue 13;
benches/README.md).

Starts target/release/hlsd with the looped 1080p Pi capture and `--output dir:TMP`, and nginx
(one worker, sendfile, tcp_nopush, no access log) serving TMP. Then, alternating ROUNDS times:
  1. plain viewers: hlsd-load --mode plain -n VIEWERS against hlsd's /stream.m3u8 and against
     nginx's /stream.m3u8 (the dir output's playlist; same segments);
  2. wrk -t1 -cCONNS -dWRK_SECONDS on one whole-segment URL, against hlsd and against nginx.
For each, the server's CPU seconds over the window (hlsd: /proc/PID/stat utime+stime, minus its
ingest CPU measured over IDLE seconds before; nginx: its worker's) and the bytes it served
(reported by the client) give CPU seconds per GB; printed with throughput, medians over rounds,
and the ratios hlsd/nginx (CPU per GB <= 1.0 is issue 13's goal).

Environment: VIEWERS (2000), RAMP (5), DURATION (15), CONNS (50), WRK_SECONDS (10), ROUNDS (3),
IDLE (5), NICE (10), THREADS (2), HLSD_BIN, LOAD_BIN, FIXTURE, NGINX (/usr/sbin/nginx).
"""
import json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HLSD = os.environ.get("HLSD_BIN", os.path.join(ROOT, "target/release/hlsd"))
LOAD = os.environ.get("LOAD_BIN", os.path.join(ROOT, "target/release/hlsd-load"))
FIX_DIR = os.environ.get("HLSD_FIXTURES", os.path.join(ROOT, "../shared/fixtures"))
FIXTURE = os.environ.get("FIXTURE", os.path.join(FIX_DIR, "pi-1080p25-raspivid.h264"))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
E = os.environ.get
VIEWERS, RAMP, DURATION = int(E("VIEWERS", "2000")), float(E("RAMP", "5")), float(E("DURATION", "15"))
CONNS, WRK_SECONDS, ROUNDS = int(E("CONNS", "50")), int(E("WRK_SECONDS", "10")), int(E("ROUNDS", "3"))
IDLE, NICE, THREADS = float(E("IDLE", "5")), E("NICE", "10"), E("THREADS", "2")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pids):
    t = 0.0
    for pid in pids:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        t += (int(f[11]) + int(f[12])) / TICK
    return t


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def get(url):
    return urllib.request.urlopen(url, timeout=5).read()


def wait_for(pred, what, timeout=40):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def plain(url, pids, idle_rate):
    cmd = ["nice", "-n", NICE, LOAD, url, "-n", str(VIEWERS), "--ramp", str(RAMP), "-d", str(DURATION),
           "--mode", "plain", "--threads", THREADS, "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    time.sleep(RAMP)
    c0, t0 = cpu_s(pids), time.time()
    out = p.communicate()[0]
    cpu = cpu_s(pids) - c0 - idle_rate * (time.time() - t0)
    r = json.loads(out)
    return dict(cpu=cpu, bytes=r["bytes"], mbit=r["mbit_per_s"], errors=r["errors_total"],
                p99=r["segment_lateness"]["p99_ms"])


def wrk(url, pids, idle_rate):
    c0, t0 = cpu_s(pids), time.time()
    out = subprocess.run(["nice", "-n", NICE, "wrk", "-t1", f"-c{CONNS}", f"-d{WRK_SECONDS}s", url],
                         capture_output=True, text=True).stdout
    cpu = cpu_s(pids) - c0 - idle_rate * (time.time() - t0)
    m = re.search(r"(\d+) requests in ([\d.]+)s, ([\d.]+)([KMG]B) read", out)
    units = {"KB": 2**10, "MB": 2**20, "GB": 2**30}
    nbytes = float(m.group(3)) * units[m.group(4)]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return dict(cpu=cpu, bytes=nbytes, mbit=nbytes * 8 / 1e6 / float(m.group(2)), errors=int(errs.group(1)) if errs else 0,
                rps=int(m.group(1)) / float(m.group(2)))


def main():
    tmp = tempfile.mkdtemp(prefix="hlsd-peer-")
    os.chmod(tmp, 0o755)  # nginx workers run as nobody
    hp, np_ = free_port(), free_port()
    hlsd = subprocess.Popen(["nice", "-n", NICE, HLSD, "--listen", f"127.0.0.1:{hp}", "--source", f"file:{FIXTURE}",
                             "--loop", "--framerate", "25", "--max-connections", "30000", "--output", f"dir:{tmp}/www"],
                            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/hlsd.log", "w"))
    conf = f"""daemon off; master_process on; worker_processes 1; error_log {tmp}/nginx.err; pid {tmp}/nginx.pid;
events {{ worker_connections 20000; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp4 mp4; video/iso.segment m4s; }}
  server {{ listen 127.0.0.1:{np_}; root {tmp}/www;
    location ~ \\.m3u8$ {{ add_header Cache-Control no-cache; }} }} }}
"""
    open(f"{tmp}/nginx.conf", "w").write(conf)
    nginx = subprocess.Popen(["nice", "-n", NICE, NGINX, "-c", f"{tmp}/nginx.conf", "-p", tmp],
                             stderr=open(f"{tmp}/nginx.log", "w"))
    try:
        wait_for(lambda: b"EXTINF" in get(f"http://127.0.0.1:{np_}/media.m3u8"), "the dir output via nginx")
        workers = wait_for(lambda: children(nginx.pid), "nginx worker")
        text = get(f"http://127.0.0.1:{np_}/media.m3u8").decode()
        seg = [l for l in text.splitlines() if l.endswith(".m4s")][-1]
        seg_size = len(get(f"http://127.0.0.1:{hp}/{seg}"))
        c0 = cpu_s([hlsd.pid])
        time.sleep(IDLE)
        idle_rate = (cpu_s([hlsd.pid]) - c0) / IDLE
        load = os.getloadavg()
        print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; hlsd ingest+dir output {idle_rate*100:.1f}% "
              f"of a core (subtracted); segment {seg} {seg_size} bytes")
        res = {k: [] for k in ("plain_hlsd", "plain_nginx", "wrk_hlsd", "wrk_nginx")}
        for i in range(ROUNDS):
            res["plain_hlsd"].append(plain(f"http://127.0.0.1:{hp}/stream.m3u8", [hlsd.pid], idle_rate))
            res["plain_nginx"].append(plain(f"http://127.0.0.1:{np_}/stream.m3u8", workers, 0.0))
            res["wrk_hlsd"].append(wrk(f"http://127.0.0.1:{hp}/{seg}", [hlsd.pid], idle_rate))
            res["wrk_nginx"].append(wrk(f"http://127.0.0.1:{np_}/{seg}", workers, 0.0))
            for k, v in res.items():
                r = v[-1]
                print(f"round {i+1} {k:<12} {r['mbit']:>9.1f} Mbit/s  CPU {r['cpu']:>6.2f} s  "
                      f"{r['cpu'] / (r['bytes'] / 1e9):>6.2f} CPU s/GB  errors {r['errors']}", flush=True)
        med = {}
        for k, v in res.items():
            med[k] = dict(mbit=statistics.median(r["mbit"] for r in v),
                          cpu_gb=statistics.median(r["cpu"] / (r["bytes"] / 1e9) for r in v))
        print("\nmedians:")
        for k, m in med.items():
            print(f"  {k:<12} {m['mbit']:>9.1f} Mbit/s  {m['cpu_gb']:.2f} CPU s/GB")
        for t in ("plain", "wrk"):
            h, n = med[f"{t}_hlsd"], med[f"{t}_nginx"]
            print(f"  {t:<5} hlsd/nginx: CPU per GB {h['cpu_gb'] / n['cpu_gb']:.2f}, throughput {h['mbit'] / n['mbit']:.2f}")
    finally:
        nginx.terminate()
        hlsd.terminate()
        nginx.wait(10)
        hlsd.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
