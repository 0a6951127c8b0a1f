// End-to-end: the player page and the stream through the nginx cache of infra/nginx
// (hlsd-cache.conf with ports and paths substituted: TLS + HTTP/2 to the browser, keep-alive
// HTTP/1.1 and proxy_cache to hlsd, the /cam prefix). hls.js plays in headless Chromium with
// blocking reloads and parts going through the cache.
//
// Run: npm ci --prefix player && cargo build && node --test tests/e2e/proxy.test.mjs

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  CHROMIUM_ARGS,
  REPO,
  artifactsDir,
  freePort,
  launchBrowser,
  openPlayer,
  sampleStats,
  startHlsd,
  startProcess,
  waitForStats,
} from './harness.mjs';

const SECONDS = Math.min(Number(process.env.E2E_SECONDS || 15), 15);

// The certificate is self-signed: this browser (one per test file) accepts it.
CHROMIUM_ARGS.push('--ignore-certificate-errors');

test('the player plays through the nginx cache of infra/nginx (TLS, HTTP/2, /cam prefix)', { timeout: (SECONDS + 90) * 1000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hlsd-e2e-proxy-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const hlsd = await startHlsd(['--width', '640', '--height', '360']);
  const hlsdAddr = new URL(hlsd.url).host;
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  const site = execFileSync(path.join(REPO, 'infra/nginx/render.sh'), [
    `127.0.0.1:${port}`, path.join(dir, 'cert.pem'), path.join(dir, 'key.pem'), hlsdAddr, path.join(dir, 'cache'), '/cam',
  ]).toString();
  writeFileSync(path.join(dir, 'hlsd.conf'), site);
  writeFileSync(path.join(dir, 'nginx.conf'), `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/t-body;
  proxy_temp_path ${dir}/t-proxy;
  fastcgi_temp_path ${dir}/t-fcgi;
  uwsgi_temp_path ${dir}/t-uwsgi;
  scgi_temp_path ${dir}/t-scgi;
  include ${dir}/hlsd.conf;
}
`);
  const nginx = startProcess('nginx', 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
  const browser = await launchBrowser();
  try {
    const page = `https://127.0.0.1:${port}/cam/?poster=0`;
    t.diagnostic(`player ${page}`);
    const { page: p, consoleErrors } = await openPlayer(browser, page);
    const start = await waitForStats(p, (s) => s.state === 'playing' && s.framesDecoded > 0, 40_000);
    const samples = await sampleStats(p, SECONDS * 1000, 500);
    const end = samples[samples.length - 1];
    await p.screenshot({ path: path.join(artifactsDir(), 'proxy-nginx.png') });
    const frames = end.framesDecoded - start.framesDecoded;
    t.diagnostic(`${frames} frames in ${SECONDS} s, latency ${end.latencyMs} ms, ${end.stalls} stalls`);
    assert.ok(frames >= SECONDS * 30 * 0.8, `only ${frames} frames decoded in ${SECONDS} s`);
    for (const s of samples) assert.equal(s.state, 'playing', `state ${s.state}: ${s.message}`);
    // Generous: nginx's cache-lock waiters may add up to 0.5 s (README "Behind a proxy or CDN").
    assert.ok(end.latencyMs > 0 && end.latencyMs < 5000, `latency ${end.latencyMs} ms`);
    assert.deepEqual(end.errors.filter((e) => e.fatal), [], 'fatal hls.js errors');
    assert.deepEqual(consoleErrors, [], 'console errors');
    const log = readFileSync(path.join(dir, 'access.log'), 'utf8');
    assert.match(log, /GET \/cam\/media\.m3u8\?[^ ]*_HLS_msn=\d+&_HLS_part=\d+[^ ]* HTTP\/2\.0" 200/, 'blocking reloads over HTTP/2');
    assert.match(log, /GET \/cam\/[a-z0-9]+-p\d+\.m4s HTTP\/2\.0" 200/, 'parts through nginx');
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
});
