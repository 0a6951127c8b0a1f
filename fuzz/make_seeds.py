#!/usr/bin/env python3
"""Writes the seed corpora fuzz/seeds/TARGET/ and the dictionaries fuzz/dict/TARGET.dict.

Seeds come from the Pi captures (../shared/fixtures: first KBs, and "skeletons" that keep the
first bytes of each NAL unit so many access units fit in a few KB), the golden playlists' URIs,
the README's example TOML, and hand-written specs. Deterministic; rerun after changing it:

    python3 fuzz/make_seeds.py
"""
import os, re, shutil, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.environ.get("HLSD_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures"))
if not os.path.isdir(FIX):
    FIX = "/work/shared/fixtures"
OUT = os.path.join(ROOT, "fuzz", "seeds")
DICT = os.path.join(ROOT, "fuzz", "dict")


def nals(data):
    """NAL units of an Annex-B stream (without start codes)."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    out = []
    for i, s in enumerate(starts):
        e = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        out.append(data[s:e].rstrip(b"\x00"))
    return out


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.rmtree(DICT, ignore_errors=True)
    os.makedirs(DICT)
    fixtures = {"720p": "pi-720p30-inline.h264", "1080p": "pi-1080p25-raspivid.h264"}
    for tag, fname in fixtures.items():
        path = os.path.join(FIX, fname)
        if not os.path.exists(path):
            sys.exit(f"make_seeds.py: fixture {path} missing (set HLSD_FIXTURES)")
        data = open(path, "rb").read()
        # au_parser: 4 option bytes (bit 0: frame-rate override, the 1080p file has no VUI timing).
        opt = b"\x01\x07\x00\x00" if tag == "1080p" else b"\x00\x05\x00\x00"
        write("au_parser", f"{tag}-head4k", opt + data[:4096])
        # bit 1: small NAL/AU limits (here 64 + 16*h[1] and 64 + 64*h[2] bytes) run the drop paths.
        write("au_parser", f"{tag}-limits", bytes([opt[0] | 2, 0x20, 0x10, 0]) + data[:8192])
        units = nals(data)
        skel = b"".join(b"\x00\x00\x00\x01" + n[:24] for n in units[:90])
        write("au_parser", f"{tag}-skeleton", opt + skel)
        skel3 = b"".join(b"\x00\x00\x01" + n[:12] for n in units[:40])
        write("au_parser", f"{tag}-skeleton3", opt + skel3)
        sps = next(n for n in units if n[0] & 0x1F == 7)
        pps = next(n for n in units if n[0] & 0x1F == 8)
        write("au_parser", f"{tag}-params", opt + b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps)
        # sps: option byte (bit 0: frame-rate override; bit 1: the bytes are the whole NAL).
        write("sps", f"{tag}-sps", bytes([1 if tag == "1080p" else 0]) + sps[1:])
        write("sps", f"{tag}-sps-raw", bytes([3 if tag == "1080p" else 2]) + sps)
        write("sps", f"{tag}-sps-pps", bytes([(8 << 2) | 1]) + sps[1:] + pps[1:])
        slice_ = next(n for n in units if n[0] & 0x1F in (1, 5))
        write("sps", f"{tag}-slice", b"\x02" + slice_[:32])
    write("sps", "baseline-320x240", b"\x01" + bytes.fromhex("42c00dd90141fb0110000003001000000303c0f1429960"))

    # http_request: 12 option bytes, the request target, header lines.
    targets = [
        "/", "/index.html", "/player.js", "/stream.m3u8", "/media.m3u8", "/media.m3u8?_HLS_msn=3",
        "/media.m3u8?_HLS_msn=3&_HLS_part=1", "/media.m3u8?_HLS_msn=2&_HLS_part=0&_HLS_skip=YES",
        "/media.m3u8?_HLS_skip=v2", "/media.m3u8?_HLS_msn=abc", "/media.m3u8?_HLS_part=2",
        "/media.m3u8?_HLS_msn=99999999999999999999", "/k3x-i0.mp4", "/k3x-p12.m4s", "/k3x-p17.m4s",
        "/k3x-s2.m4s", "/healthz", "/metrics", "/cams/x/media.m3u8?_HLS_msn=3&_HLS_part=0",
        "/cams/x/k3x-p3.m4s", "/cams/x", "/../etc/passwd", "/%2e%2e/x", "*",
        "http://example.com/media.m3u8?run=k3x",
    ]
    for g in sorted(os.listdir(os.path.join(ROOT, "tests", "golden"))):
        for line in open(os.path.join(ROOT, "tests", "golden", g)):
            for uri in re.findall(r'(?:URI="|^)([\w.-]+\.(?:m4s|mp4|m3u8)[^"\s]*)', line.strip()):
                targets.append("/" + uri.replace("run-", "k3x-"))
    seen = set()
    for i, t in enumerate(targets):
        if t in seen:
            continue
        seen.add(t)
        opt = bytes([i % 16]) + bytes((i * 37 + k) % 256 for k in range(11))
        hdrs = "\nAccept-Encoding: gzip, deflate;q=0.5\nRange: bytes=0-9" if i % 3 == 0 else ""
        write("http_request", f"req{i:02}", opt + (t + hdrs).encode())

    # config_toml: the README's TOML examples and a few more.
    readme = open(os.path.join(ROOT, "README.md")).read()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
        write("config_toml", f"readme{i}.toml", block.encode())
    write("config_toml", "minimal.toml", b'source = "file:/x.h264"\nsegment-duration = 2.0\nloop = true\nwindow = 8\n')
    write("config_toml", "floats.toml", b"http-timeout = 30.0\nstall-timeout = 10.0\nidle-flush-ms = 1.0\npart-duration = 0.25\nframerate = 25\n")
    write("config_toml", "outputs.toml", b's3-endpoint = "http://127.0.0.1:9000"\nrtmp = ["rtmp://h/app/key"]\n[[output]]\nurl = "s3://bk1/cams/x"\nqueue = 5\nsecret-access-key = "x"\n[[output]]\ndir = "/srv/hls"\nretention = "all"\n[[rtmp]]\nurl = "rtmps://[::1]:4443/live/k"\n')
    write("config_toml", "v4l2.toml", b'source = "v4l2:/dev/video0"\nv4l2-profile = "high"\nv4l2-level = "4.1"\nv4l2-bitrate = 4000000\nv4l2-repeat-headers = false\nbase-path = "/cams/birdbox"\n')

    # specs: one spec string per seed.
    specs = [
        "testsrc", "stdin", "-", "file:/srv/cam.h264", "exec:rpicam-vid -t 0 --inline -o -",
        "tcp://raspberrypi.local:8888", "v4l2:/dev/video0", "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
        "rtmps://live.twitch.tv:443/app/live_123_abc", "rtmp://[::1]:1935/live/inst/key?token=1",
        "RTMP://host/app/", "rtmp://user:pw@host/app/key", "rtmp://host:0/app/key", "dir:/srv/hls",
        "s3://bucket/cams/birdbox/", "s3://b/../x", "high", "constrained-baseline", "4.1", "3",
        'error at line 3: url = "rtmp://h/app/secret-key", rtmps://x/y',
    ]
    for i, s in enumerate(specs):
        write("specs", f"spec{i:02}", s.encode())

    # Dictionaries.
    keys = re.findall(r"^\s*pub ([a-z0-9_]+):", open(os.path.join(ROOT, "src", "config.rs")).read(), re.M)
    out_keys = re.findall(r"^\s*pub ([a-z0-9_]+):", open(os.path.join(ROOT, "src", "sink", "storage", "config.rs")).read(), re.M)
    toml_words = sorted({k.replace("_", "-") for k in keys + out_keys} | {"loop", "[[output]]", "[[rtmp]]", "url", "nan", "inf", "-inf", "true", "false", "1e308", "rtmp://", "s3://", "dir:", "file:", "exec:", "tcp://", "v4l2:"})
    with open(os.path.join(DICT, "config_toml.dict"), "w") as f:
        f.writelines(f'"{w}"\n' for w in toml_words)
    spec_words = ["rtmp://", "rtmps://", "s3://", "dir:", "file:", "exec:", "tcp://", "v4l2:/dev/", "testsrc", "stdin", "@", "[", "]", ":", "/", "?", "..", "high", "main", "baseline"]
    with open(os.path.join(DICT, "specs.dict"), "w") as f:
        f.writelines(f'"{w}"\n' for w in spec_words)
    http_words = ["_HLS_msn=", "_HLS_part=", "_HLS_skip=YES", "_HLS_skip=v2", "&", "?", "media.m3u8", "stream.m3u8", "k3x-", "-p", "-s", "-i", ".m4s", ".mp4", "/cams/x", "healthz", "metrics", "Accept-Encoding: ", "gzip", "q=0", "18446744073709551615", "9223372036854775808"]
    with open(os.path.join(DICT, "http_request.dict"), "w") as f:
        f.writelines(f'"{w}"\n' for w in http_words)
    h264_words = ["\\x00\\x00\\x01", "\\x00\\x00\\x00\\x01", "\\x00\\x00\\x03", "\\x00\\x00\\x01\\x09\\xf0", "\\x00\\x00\\x01\\x67", "\\x00\\x00\\x01\\x68", "\\x00\\x00\\x01\\x65\\x88", "\\x00\\x00\\x01\\x41\\x9a", "\\x00\\x00\\x01\\x06"]
    with open(os.path.join(DICT, "au_parser.dict"), "w") as f:
        f.writelines(f'"{w}"\n' for w in h264_words)
    for t in sorted(os.listdir(OUT)):
        n = len(os.listdir(os.path.join(OUT, t)))
        size = sum(os.path.getsize(os.path.join(OUT, t, x)) for x in os.listdir(os.path.join(OUT, t)))
        print(f"{t}: {n} seeds, {size} bytes")


main()
