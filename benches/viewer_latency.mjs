// Viewer latency bench: what a viewer in Chromium + hls.js sees, on loopback.
//
// For each server, opens the player page, waits until it plays, then samples window.hlsdStats
// every 250 ms for DURATION seconds (after WARMUP seconds of playback): latency is PDT-based (wall clock minus the capture time of
// the frame on screen, i.e. glass-to-glass minus the camera), so it includes encoding,
// segmenting, HTTP and the player's buffer. Reports p50/p95/max latency and stalls.
//
//   hlsd             hlsd --source testsrc with default settings (1 s segments, 200 ms parts)
//   ffmpeg+nginx     the reference: ffmpeg's plain HLS (-f hls -hls_segment_type fmp4 -hls_time 1,
//                    PDT from -hls_flags program_date_time) served by nginx, the same player page
//
// Both run in the same invocation, one after the other, so they share the machine's state.
// Targets for hlsd: p50 <= 1.0 s, p95 <= 1.5 s, zero stalls. This is a bench, not a test: it
// exits 0 whatever the numbers unless STRICT=1.
//
// Environment: DURATION (seconds, default 60), WARMUP (seconds, default 5), ONLY=hlsd|ffmpeg, HLSD_ARGS (extra hlsd args),
// HLSD_BIN, CHROMIUM, STRICT=1, and BENCH_JSON (where to write the results; default
// target/bench/viewer_latency.json).

import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  REPO,
  PLAYER_DIR,
  freePort,
  launchBrowser,
  openPlayer,
  percentile,
  readStats,
  sampleStats,
  sleep,
  startHlsd,
  startProcess,
  waitForSegments,
  waitForStats,
} from '../tests/e2e/harness.mjs';

const DURATION_S = Number(process.env.DURATION || 60);
const SAMPLE_MS = 250;
/** Seconds of playback before sampling starts: the start-up jump to the live edge is not steady state. */
const WARMUP_S = Number(process.env.WARMUP ?? 5);
const TARGET = { p50: 1.0, p95: 1.5, stalls: 0 };
/** The reference stream: the same picture size and rate as hlsd's testsrc, keyframe every 1 s. */
const FFMPEG_INPUT = ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30'];
const FFMPEG_ENCODE = ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-bf', '0', '-g', '30', '-pix_fmt', 'yuv420p'];

async function measure(label, pageUrl, browser) {
  const { page, consoleErrors } = await openPlayer(browser, pageUrl);
  try {
    await waitForStats(page, (s) => s.state === 'playing' && s.latencyMs !== null, 30_000);
    await sleep(WARMUP_S * 1000);
    const first = await readStats(page);
    const samples = await sampleStats(page, DURATION_S * 1000, SAMPLE_MS);
    const last = samples[samples.length - 1];
    const lat = samples.map((s) => s.latencyMs).filter((v) => typeof v === 'number').map((v) => v / 1000).sort((a, b) => a - b);
    const shot = path.join(REPO, 'target', 'bench', `viewer_latency-${label.replace(/\W+/g, '_')}.png`);
    await page.screenshot({ path: shot });
    return {
      label,
      samples: lat.length,
      p50: percentile(lat, 50),
      p95: percentile(lat, 95),
      max: lat[lat.length - 1],
      stalls: last.stalls - first.stalls,
      frames: last.framesDecoded - first.framesDecoded,
      dropped: last.framesDropped - first.framesDropped,
      targetLatency: last.targetLatencyMs / 1000,
      bitrateKbps: last.bitrateKbps,
      resolution: `${last.width}x${last.height}`,
      fatalErrors: last.errors.filter((e) => e.fatal).length,
      errors: last.errors.slice(-10),
      stallLog: last.stallLog,
      consoleErrors: consoleErrors.slice(0, 10),
      screenshot: path.relative(REPO, shot),
    };
  } finally {
    await page.close();
  }
}

async function benchHlsd(browser) {
  const extra = (process.env.HLSD_ARGS || '').split(/\s+/).filter(Boolean);
  const hlsd = await startHlsd(['--source', 'testsrc', ...extra]);
  try {
    // Join a running stream, as the reference below does.
    await waitForSegments(hlsd.url, 4);
    return await measure('hlsd', hlsd.url, browser);
  } finally {
    await hlsd.stop();
  }
}

async function benchFfmpeg(browser) {
  const dir = mkdtempSync(path.join(tmpdir(), 'hlsd-bench-ffmpeg-'));
  const www = path.join(dir, 'www');
  mkdirSync(www);
  for (const f of ['index.html', 'player.js', 'player.css']) cpSync(path.join(PLAYER_DIR, f), path.join(www, f));
  cpSync(path.join(PLAYER_DIR, 'node_modules/hls.js/dist/hls.min.js'), path.join(www, 'hls.min.js'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  types {
    text/html html;
    text/javascript js;
    text/css css;
    application/vnd.apple.mpegurl m3u8;
    video/mp4 mp4;
    video/iso.segment m4s;
  }
  server {
    listen 127.0.0.1:${port};
    root ${www};
    location ~ \\.m3u8$ { add_header Cache-Control "no-cache"; }
  }
}
`,
  );
  const ffmpeg = startProcess('ffmpeg', 'ffmpeg', [
    '-hide_banner', '-loglevel', 'warning', '-nostdin',
    ...FFMPEG_INPUT, ...FFMPEG_ENCODE,
    '-f', 'hls', '-hls_segment_type', 'fmp4', '-hls_time', '1', '-hls_list_size', '6',
    '-hls_flags', 'program_date_time+delete_segments+independent_segments',
    path.join(www, 'stream.m3u8'),
  ]);
  const nginx = startProcess('nginx', 'nginx', ['-p', dir, '-c', conf]);
  try {
    // Open the page once the playlist is as long as a viewer would find it (hls.js starts 3
    // segments from the end), so that the reference does not start on a half-built window.
    await waitForFile(path.join(www, 'stream.m3u8'), (text) => (text.match(/#EXTINF/g) || []).length >= 4, 30_000);
    // poster=0: plain ffmpeg output has no snapshot.jpg.
    return await measure('ffmpeg+nginx', `http://127.0.0.1:${port}/?poster=0`, browser);
  } catch (e) {
    e.message += `\n${ffmpeg.log.join('\n')}\n${nginx.log.join('\n')}`;
    throw e;
  } finally {
    await nginx.stop();
    await ffmpeg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Polls a file written by another process until its text satisfies `ready` (bounded). */
async function waitForFile(file, ready, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (ready(readFileSync(file, 'utf8'))) return;
    } catch {
      // not written yet
    }
    await sleep(100);
  }
  throw new Error(`${file} not ready after ${timeoutMs} ms`);
}

function fmt(v, digits = 2) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-';
}

function table(results) {
  const rows = [['server', 'p50 s', 'p95 s', 'max s', 'stalls', 'frames', 'dropped', 'target s', 'kb/s', 'fatal', 'console', 'samples']];
  for (const r of results) {
    rows.push([r.label, fmt(r.p50), fmt(r.p95), fmt(r.max), String(r.stalls), String(r.frames), String(r.dropped),
      fmt(r.targetLatency, 1), String(r.bitrateKbps ?? '-'), String(r.fatalErrors), String(r.consoleErrors.length), String(r.samples)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

async function main() {
  const only = process.env.ONLY;
  const browser = await launchBrowser();
  const results = [];
  try {
    if (!only || only === 'hlsd') results.push(await benchHlsd(browser));
    if (!only || only === 'ffmpeg') results.push(await benchFfmpeg(browser));
  } finally {
    await browser.close();
  }
  console.log(`\nviewer latency, Chromium + hls.js on loopback, ${DURATION_S} s each (PDT-based, sampled every ${SAMPLE_MS} ms)\n`);
  console.log(table(results));
  const hlsd = results.find((r) => r.label === 'hlsd');
  const ref = results.find((r) => r.label === 'ffmpeg+nginx');
  if (hlsd && ref) {
    console.log(`\nffmpeg+nginx / hlsd: p50 ${fmt(ref.p50 / hlsd.p50, 1)}x, p95 ${fmt(ref.p95 / hlsd.p95, 1)}x`);
  }
  let met = true;
  if (hlsd) {
    met = hlsd.p50 <= TARGET.p50 && hlsd.p95 <= TARGET.p95 && hlsd.stalls <= TARGET.stalls;
    console.log(`hlsd target (p50 <= ${TARGET.p50} s, p95 <= ${TARGET.p95} s, ${TARGET.stalls} stalls): ${met ? 'met' : 'NOT met'}`);
  }
  const out = process.env.BENCH_JSON || path.join(REPO, 'target', 'bench', 'viewer_latency.json');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), durationS: DURATION_S, target: TARGET, results }, null, 2));
  console.log(`results: ${path.relative(process.cwd(), out)}`);
  if (process.env.STRICT === '1' && !met) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
