// End-to-end: hlsd publishes to a directory (--output dir:TMP), a real nginx serves that
// directory as static files, and the player page plays the nginx URL in headless Chromium.
// This is the "any static server / CDN" path: a standard live playlist (no blocking reload),
// fetched from a server that knows nothing about HLS. The second test publishes parts
// (`parts = true`: a non-blocking LL-HLS playlist rewritten at every part) and requires the
// player to stay under 2 s behind live (PDT clock), with no hls.js error at all (a playlist
// that ended in a segment line once made hls.js stop with levelParsingError).
//
// Run: npm ci --prefix player && cargo build && node --test tests/e2e/disk_output.test.mjs
// (HLSD_BIN, CHROMIUM, E2E_ARTIFACTS, E2E_SECONDS as in harness.mjs.)

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  artifactsDir,
  freePort,
  launchBrowser,
  openPlayer,
  sampleStats,
  startHlsd,
  startProcess,
  waitForStats,
} from './harness.mjs';

const SECONDS = Math.min(Number(process.env.E2E_SECONDS || 20), 20);
const TEST_TIMEOUT_MS = (SECONDS + 90) * 1000;

function nginxConf(dir, www, port) {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  types {
    application/vnd.apple.mpegurl m3u8;
    video/mp4 mp4;
    video/iso.segment m4s;
  }
  server {
    listen 127.0.0.1:${port};
    root ${www};
    add_header Access-Control-Allow-Origin * always;
    location ~ \\.m3u8$ {
      add_header Access-Control-Allow-Origin * always;
      add_header Cache-Control "no-cache";
    }
    location ~ \\.(m4s|mp4)$ {
      add_header Access-Control-Allow-Origin * always;
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
  }
}
`;
}

/** Polls a file written by hlsd until `ready(text)` (bounded; files have no event to wait on). */
async function waitForFile(file, ready, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      last = readFileSync(file, 'utf8');
      if (ready(last)) return last;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${file} not ready within ${timeoutMs} ms; last:\n${last}`);
}

async function playDiskOutput(t, parts) {
  const dir = mkdtempSync(path.join(tmpdir(), 'hlsd-e2e-disk-'));
  chmodSync(dir, 0o755);
  const www = path.join(dir, 'www');
  const port = await freePort();
  writeFileSync(path.join(dir, 'nginx.conf'), nginxConf(dir, www, port));
  writeFileSync(path.join(dir, 'hlsd.toml'), `[[output]]\ndir = ${JSON.stringify(www)}\nparts = ${parts}\n`);
  const hlsd = await startHlsd(['--width', '640', '--height', '360', '--window', '6', '--config', path.join(dir, 'hlsd.toml')]);
  const nginx = startProcess('nginx', 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
  const browser = await launchBrowser();
  try {
    // Join once the published window is as long as a viewer would find it.
    await waitForFile(path.join(www, 'media.m3u8'), (text) => (text.match(/#EXTINF/g) || []).length >= 4, 30_000);
    const src = `http://127.0.0.1:${port}/stream.m3u8`;
    const page = `${hlsd.url}?src=${encodeURIComponent(src)}&poster=0`;
    t.diagnostic(`player ${page}`);
    const { page: p, consoleErrors } = await openPlayer(browser, page);
    const start = await waitForStats(p, (s) => s.state === 'playing' && s.framesDecoded > 0, 30_000);
    const samples = await sampleStats(p, SECONDS * 1000, 500);
    const end = samples[samples.length - 1];
    await p.screenshot({ path: path.join(artifactsDir(), 'disk-output-nginx.png') });
    const frames = end.framesDecoded - start.framesDecoded;
    t.diagnostic(`${frames} frames in ${SECONDS} s, latency ${end.latencyMs} ms, ${end.stalls} stalls, src ${end.src}`);

    assert.equal(end.src, src, 'the page played the nginx URL');
    assert.ok(frames >= SECONDS * 30 * 0.8, `only ${frames} frames decoded in ${SECONDS} s`);
    let since = samples[0].at;
    let longest = 0;
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].framesDecoded !== samples[i - 1].framesDecoded) since = samples[i].at;
      longest = Math.max(longest, samples[i].at - since);
    }
    assert.ok(longest <= 1500, `frames stopped advancing for ${longest} ms`);
    for (const s of samples) assert.equal(s.state, 'playing', `state ${s.state}: ${s.message}`);
    assert.equal(end.width, 640);
    assert.equal(end.height, 360);
    // The media came from nginx, not from hlsd.
    const log = readFileSync(path.join(dir, 'access.log'), 'utf8');
    assert.ok(end.latencyMs > 0 && end.latencyMs < 15_000, `latency ${end.latencyMs} ms`);
    assert.deepEqual(end.errors.filter((e) => e.fatal), [], 'fatal hls.js errors');
    if (parts) {
      // Median over the sampling window: the goal of issue 12 (non-blocking LL-HLS from storage).
      const lat = samples.map((s) => s.latencyMs).filter((l) => l !== null).sort((a, b) => a - b);
      const median = lat[Math.floor(lat.length / 2)];
      t.diagnostic(`parts: median latency ${median} ms over ${lat.length} samples`);
      assert.ok(median < 2000, `median latency ${median} ms with parts (goal < 2 s)`);
      assert.deepEqual(end.errors.filter((e) => e.type !== 'mediaError'), [], 'hls.js network/parsing errors');
      assert.match(log, /GET \/[a-z0-9]+-p\d+\.m4s HTTP\/1\.1" 200/, 'the player fetched parts');
    }
    assert.deepEqual(consoleErrors, [], 'console errors');

    assert.match(log, /GET \/media\.m3u8 HTTP\/1\.1" 200/);
    if (!parts) assert.match(log, /GET \/[a-z0-9]+-s\d+\.m4s HTTP\/1\.1" 200/);
    assert.doesNotMatch(log, /" 404 /, 'nginx answered 404: a playlist named a file that was not there');
  } catch (e) {
    e.message += `\n--- hlsd ---\n${hlsd.log.slice(-30).join('\n')}\n--- nginx ---\n${nginx.log.join('\n')}`;
    throw e;
  } finally {
    await browser.close();
    await nginx.stop();
    const { leftovers } = await hlsd.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers, [], 'hlsd left processes behind');
  }
}

test('disk output served by nginx plays in the player page', { timeout: TEST_TIMEOUT_MS }, (t) => playDiskOutput(t, false));
test('low-latency disk output (parts) served by nginx plays under 2 s behind live', { timeout: TEST_TIMEOUT_MS }, (t) =>
  playDiskOutput(t, true));
