// End-to-end: hlsd publishes low-latency HLS (`parts = true`) to an S3-compatible server (moto's
// standalone server, as in tests/storage.rs), and the player page plays the bucket's URL in
// headless Chromium: under 2 s behind live (median, PDT clock), no hls.js error.
//
// Run: infra/setup.sh --test && cargo build && node --test tests/e2e/s3_output.test.mjs

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { freePort, launchBrowser, openPlayer, sampleStats, sleep, startHlsd, startProcess, waitForStats } from './harness.mjs';

const SECONDS = Math.min(Number(process.env.E2E_SECONDS || 15), 15);

async function s3(method, url, body, headers = {}) {
  const r = await fetch(url, { method, body, headers });
  assert.ok(r.ok, `${method} ${url}: ${r.status} ${await r.text()}`);
}

test('low-latency S3 output plays from the bucket under 2 s behind live', { timeout: (SECONDS + 120) * 1000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hlsd-e2e-s3-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const moto = startProcess('moto', 'python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)]);
  let hlsd;
  const browser = await launchBrowser();
  try {
    // Ready when it answers (bounded polling: a process start has no event to wait on).
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await fetch(`${endpoint}/`);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`moto did not start (infra/setup.sh --test installs it): ${moto.log.join('\n')}`);
        await sleep(200);
      }
    }
    // A bucket anyone may read, with CORS for browser players (as behind a CDN).
    await s3('PUT', `${endpoint}/live`);
    const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: 'arn:aws:s3:::live/*' }] };
    await s3('PUT', `${endpoint}/live?policy`, JSON.stringify(policy), { 'content-type': 'application/json' });
    await s3('PUT', `${endpoint}/live?cors`,
      '<?xml version="1.0" encoding="UTF-8"?><CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>' +
      '<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader>' +
      '</CORSRule></CORSConfiguration>', { 'content-type': 'application/xml' });
    writeFileSync(path.join(dir, 'hlsd.toml'), `[[output]]\nurl = "s3://live/cam"\nendpoint = "${endpoint}"\nparts = true\n`);
    process.env.AWS_ACCESS_KEY_ID = 'test';
    process.env.AWS_SECRET_ACCESS_KEY = 'test';
    process.env.AWS_REGION = 'us-east-1';
    hlsd = await startHlsd(['--width', '640', '--height', '360', '--window', '6', '--config', path.join(dir, 'hlsd.toml')]);
    const src = `${endpoint}/live/cam/stream.m3u8`;
    // Join once the bucket holds a few segments (polled: the bucket has no event to wait on).
    const joinBy = Date.now() + 30_000;
    for (;;) {
      const r = await fetch(`${endpoint}/live/cam/media.m3u8`);
      const text = r.ok ? await r.text() : '';
      if ((text.match(/#EXTINF/g) || []).length >= 3) break;
      if (Date.now() > joinBy) throw new Error(`bucket playlist not ready: ${r.status} ${text}`);
      await sleep(200);
    }
    const { page: p, consoleErrors } = await openPlayer(browser, `${hlsd.url}?src=${encodeURIComponent(src)}&poster=0`);
    const start = await waitForStats(p, (s) => s.state === 'playing' && s.framesDecoded > 0, 30_000);
    const samples = await sampleStats(p, SECONDS * 1000, 500);
    const end = samples[samples.length - 1];
    const lat = samples.map((s) => s.latencyMs).filter((l) => l !== null).sort((a, b) => a - b);
    const median = lat[Math.floor(lat.length / 2)];
    const frames = end.framesDecoded - start.framesDecoded;
    t.diagnostic(`${frames} frames in ${SECONDS} s, median latency ${median} ms, ${end.stalls} stalls`);
    assert.equal(end.src, src, 'the page played the bucket URL');
    assert.ok(frames >= SECONDS * 30 * 0.8, `only ${frames} frames decoded in ${SECONDS} s`);
    for (const s of samples) assert.equal(s.state, 'playing', `state ${s.state}: ${s.message}`);
    assert.ok(median < 2000, `median latency ${median} ms (goal < 2 s)`);
    assert.deepEqual(end.errors.filter((e) => e.type !== 'mediaError'), [], 'hls.js network/parsing errors');
    assert.deepEqual(end.errors.filter((e) => e.fatal), [], 'fatal hls.js errors');
    assert.deepEqual(consoleErrors, [], 'console errors');
  } catch (e) {
    e.message += `\n--- hlsd ---\n${hlsd ? hlsd.log.slice(-30).join('\n') : ''}\n--- moto ---\n${moto.log.slice(-20).join('\n')}`;
    throw e;
  } finally {
    await browser.close();
    const leftovers = hlsd ? (await hlsd.stop()).leftovers : [];
    await moto.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(leftovers, [], 'hlsd left processes behind');
  }
});
