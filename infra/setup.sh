#!/usr/bin/env bash
# Installs what hlsd needs on Debian / Raspberry Pi OS. Idempotent; installs only what is missing.
#   infra/setup.sh          build + run needs (Node.js/npm for the player's hls.js, a C compiler)
#   infra/setup.sh --test   also the test tools (ffmpeg/ffprobe, chromium, nginx, moto's S3 server)
#   infra/setup.sh --fuzz   also a C++ compiler for fuzz/run.sh
#   infra/setup.sh --bench  also the bench tools (wrk, valgrind, nginx, time; benches/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# clang + libclang-dev + linux-libc-dev: bindgen generates the `v4l` crate's V4L2 bindings from
# <linux/videodev2.h> at build time.
want=(ca-certificates pkg-config gcc nasm clang libclang-dev linux-libc-dev)
# Node.js/npm from Debian only when the machine has none (another install may own them).
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
if [[ "${1:-}" == "--test" ]]; then
  want+=(ffmpeg chromium nginx time python3 curl)
  want+=(libnginx-mod-rtmp libnginx-mod-stream openssl)  # tests/rtmp.rs: RTMP relay, TLS front for rtmps
  want+=(libnginx-mod-http-js)  # tests/access.rs: the README's njs check of signed URLs at nginx
  want+=(python3-pip)  # tests/storage.rs: moto's S3 server, below
  want+=(varnish caddy)  # tests/proxies.rs: infra/varnish, infra/caddy (both in Debian 12)
fi
# benches/fanout.py, benches/peer.py: wrk and nginx as peers, valgrind's callgrind, GNU time.
if [[ " $* " == *" --bench "* ]]; then
  want+=(wrk valgrind nginx time python3)
fi
# fuzz/run.sh: libfuzzer-sys compiles libFuzzer's C++ runtime.
if [[ " $* " == *" --fuzz "* ]]; then
  want+=(g++)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# tests/storage.rs, benches/storage_upload.sh: moto's standalone S3 server (PyPI), pinned.
MOTO='moto[server]==5.2.1'
if [[ "${1:-}" == "--test" ]] && ! python3 -c 'import moto.server, flask_cors' 2>/dev/null; then
  echo "setup: pip install $MOTO" >&2
  python3 -m pip install --quiet "$MOTO" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "$MOTO" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is not installed. Install it with rustup (https://rustup.rs):" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . ~/.cargo/env" >&2
  echo "(Debian's own cargo package is too old for hlsd, which needs Rust 1.85 or newer.)" >&2
  exit 1
fi

# hls.js for the player page, pinned by player/package-lock.json; build.rs embeds it.
if [[ ! -f player/node_modules/.package-lock.json || player/package-lock.json -nt player/node_modules/.package-lock.json ]]; then
  echo "setup: npm ci --prefix player" >&2
  npm ci --prefix player --no-audit --no-fund --loglevel=error >&2
fi
