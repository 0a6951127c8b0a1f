// End-to-end: the real hlsd binary, the real player page, Debian's chromium (headless) driven by
// playwright-core. Each test starts hlsd on 127.0.0.1:0, opens the page hlsd names, waits until it
// plays, samples window.hlsdStats for 30 s and judges what a viewer would have seen: frames
// advancing, latency measured from PROGRAM-DATE-TIME, no stalls, no hls.js errors, nothing on the
// console. A screenshot of each playing page goes to target/e2e-artifacts/.
//
// Run: npm ci --prefix player && cargo build --release && node --test tests/e2e/
// (HLSD_BIN, HLSD_FIXTURES, CHROMIUM, E2E_ARTIFACTS, E2E_SECONDS override the defaults.)

import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  artifactsDir,
  fixturesDir,
  launchBrowser,
  openPlayer,
  sampleStats,
  startHlsd,
  waitForSegments,
  waitForStats,
} from './harness.mjs';

/** Playback observed per scenario. */
const SECONDS = Number(process.env.E2E_SECONDS || 30);
const SAMPLE_MS = 500;
/** The page must be playing this soon after it opens. */
const START_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = (SECONDS + 90) * 1000;

/**
 * A source that stops after 6 s and stays away 6 s (longer than the player's 4 s "offline"
 * threshold, shorter than hlsd's 10 s stall timeout), then exits and is restarted by hlsd: again
 * and again, about every 12.5 s.
 */
const INTERRUPTED_SOURCE =
  'ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=640x360:rate=30 -t 6 ' +
  '-c:v libx264 -preset veryfast -tune zerolatency -bf 0 -g 30 -pix_fmt yuv420p -f h264 -; exec sleep 6';

/**
 * Starts hlsd with `args`, plays the page for SECONDS and returns what was seen. Always stops
 * hlsd and the browser, and fails if hlsd left a process behind.
 */
async function watch(t, name, args, { after, settleMs = 0 } = {}) {
  rmSync(path.join(artifactsDir(), `${name}-console.log`), { force: true });
  const hlsd = await startHlsd(args);
  const browser = await launchBrowser();
  let result;
  try {
    t.diagnostic(`hlsd ${args.join(' ')} at ${hlsd.url}`);
    // Join a running stream, as viewers do.
    await waitForSegments(hlsd.url, 2);
    // E2E_DEBUG=1: hls.js logs to the console, saved as an artifact when something stalls.
    const pageUrl = process.env.E2E_DEBUG === '1' ? `${hlsd.url}?debug=1` : hlsd.url;
    const { page, consoleErrors, consoleLog } = await openPlayer(browser, pageUrl);
    const playing = await waitForStats(page, (s) => s.state === 'playing' && s.framesDecoded > 0, START_TIMEOUT_MS).catch(
      async (e) => {
        await page.screenshot({ path: path.join(artifactsDir(), `${name}-failed-start.png`) });
        throw e;
      },
    );
    const start = settleMs ? (await sampleStats(page, settleMs, SAMPLE_MS)).pop() : playing;
    if (start.stalls) t.diagnostic(`${name}: ${start.stalls} stall(s) at start-up: ${JSON.stringify(start.stallLog)}`);
    const samples = await sampleStats(page, SECONDS * 1000, SAMPLE_MS);
    const screenshot = path.join(artifactsDir(), `${name}.png`);
    await page.screenshot({ path: screenshot });
    const end = samples[samples.length - 1];
    t.diagnostic(
      `${name}: ${end.framesDecoded - start.framesDecoded} frames, latency ${latencySummary(samples)}, ` +
        `${end.width}x${end.height}, ${end.bitrateKbps} kb/s, ${end.stalls} stalls, ${end.reloads} reloads, ` +
        `${end.errors.length} hls.js errors, screenshot ${screenshot}`,
    );
    if (end.stalls) {
      const log = path.join(artifactsDir(), `${name}-console.log`);
      writeFileSync(log, consoleLog.join('\n'));
      t.diagnostic(
        `${name}: stalls ${JSON.stringify(end.stallLog)} (window from ${new Date(start.at).toISOString()}); ` +
          `hls.js errors ${JSON.stringify(end.errors)}; console log ${log}`,
      );
    }
    result = { start, samples, end, consoleErrors, hlsd };
    if (after) result.after = await after(page);
  } catch (e) {
    e.message += `\n--- hlsd log (tail) ---\n${hlsd.log.slice(-40).join('\n')}`;
    throw e;
  } finally {
    await browser.close();
    const { leftovers, status } = await hlsd.stop();
    t.diagnostic(`hlsd stopped: ${JSON.stringify(status)}`);
    assert.deepEqual(leftovers, [], 'hlsd left processes behind after SIGTERM');
  }
  return result;
}

function latencySummary(samples) {
  const v = samples.map((s) => s.latencyMs).filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (!v.length) return 'none';
  const q = (p) => (v[Math.min(v.length - 1, Math.floor(p * v.length))] / 1000).toFixed(2);
  return `p50 ${q(0.5)} s, p95 ${q(0.95)} s`;
}

/** Longest stretch (ms) over which framesDecoded did not move. */
function longestFreeze(samples) {
  let longest = 0;
  let since = samples[0].at;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].framesDecoded !== samples[i - 1].framesDecoded) since = samples[i].at;
    longest = Math.max(longest, samples[i].at - since);
  }
  return longest;
}

function assertSmoothLivePlayback({ start, samples, end, consoleErrors }, { width, height, fps, startupStalls = 0 }) {
  const frames = end.framesDecoded - start.framesDecoded;
  assert.ok(frames >= SECONDS * fps * 0.8, `only ${frames} frames decoded in ${SECONDS} s at ${fps} fps`);
  assert.ok(longestFreeze(samples) <= 1500, `frames stopped advancing for ${longestFreeze(samples)} ms`);
  assert.ok(end.currentTime - start.currentTime >= SECONDS * 0.8, `playhead moved only ${end.currentTime - start.currentTime} s`);

  for (const s of samples) {
    assert.equal(s.state, 'playing', `state ${s.state} at ${new Date(s.at).toISOString()}: ${s.message}`);
    assert.equal(typeof s.latencyMs, 'number', 'latency reported while playing');
    assert.ok(s.latencyMs > 0 && s.latencyMs < 10_000, `latency ${s.latencyMs} ms outside (0, 10 s)`);
  }
  assert.equal(end.width, width, 'video width');
  assert.equal(end.height, height, 'video height');
  assert.ok(end.bitrateKbps > 0, `bitrate reported (${end.bitrateKbps})`);
  assert.ok(start.stalls <= startupStalls, `${start.stalls} stalls at start-up: ${JSON.stringify(start.stallLog)}`);
  assert.equal(end.stalls - start.stalls, 0, `stalls while playing: ${JSON.stringify(end.stallLog)}`);
  assert.deepEqual(end.errors.filter((e) => e.fatal), [], 'fatal hls.js errors');
  assert.equal(end.reloads, 0, 'the player had to be rebuilt');
  assert.deepEqual(consoleErrors, [], 'console errors');
}

test('testsrc: live playback with PDT latency, no stalls, no errors', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const seen = await watch(t, 'testsrc', ['--source', 'testsrc']);
  assertSmoothLivePlayback(seen, { width: 1280, height: 720, fps: 30 });
});

test('fixture file (Pi 720p30, looped): live playback, no stalls, no errors', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const fixture = path.join(fixturesDir(), 'pi-720p30-inline.h264');
  if (!existsSync(fixture)) {
    t.skip(`fixture ${fixture} not found (set HLSD_FIXTURES)`);
    return;
  }
  // The Pi's keyframes are 2 s apart, so hls.js joins by fetching up to ten parts back-to-back
  // from the last one marked INDEPENDENT. hls.js 1.7.4 then marks only the last of them loaded,
  // fetches the run again and stalls once for up to a second or two (seen in about half the
  // runs). That start-up stall is allowed (and reported); the 30 s after it must be clean.
  const seen = await watch(t, 'fixture-720p30', ['--source', `file:${fixture}`, '--loop'], { settleMs: 8000 });
  assertSmoothLivePlayback(seen, { width: 1280, height: 720, fps: 30, startupStalls: 1 });
});

test('source stopped and restarted: the page recovers on its own', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { samples, end, consoleErrors, after } = await watch(t, 'source-restart', ['--source', `exec:${INTERRUPTED_SOURCE}`], {
    // Wherever the window ended in the 12.5 s cycle, the page is playing again within one cycle.
    after: (page) => waitForStats(page, (s) => s.state === 'playing' && s.latencyMs !== null, 20_000),
  });
  const states = samples.map((s) => s.state[0]).join('');
  t.diagnostic(`states (p=playing, s=stalled, o=offline, e=reconnecting, l=loading): ${states}`);
  t.diagnostic(`stalls ${JSON.stringify(end.stallLog)}; errors ${JSON.stringify(end.errors)}`);

  // The interruption was seen and told to the viewer (else this test tests nothing) ...
  const interrupted = samples.findIndex((s) => s.state === 'offline');
  assert.ok(interrupted >= 0, `the source went away for 6 s, yet the page never said it was offline: ${states}`);
  assert.match(samples[interrupted].message, /offline/i, 'the offline message');
  // ... and playback came back after it, with no one touching the page.
  // (framesDecoded restarts from 0 when the player rebuilds itself, so look for change.)
  const resumed = samples.find(
    (s, i) => i > interrupted && s.state === 'playing' && s.framesDecoded !== samples[i - 1].framesDecoded,
  );
  assert.ok(resumed, `playback did not resume after the source came back: ${states}`);
  assert.ok(longestFreeze(samples) <= 14_000, `frames stopped advancing for ${longestFreeze(samples)} ms`);

  // It ends playing live again, with latency measured.
  assert.ok(after.latencyMs > 0 && after.latencyMs < 10_000, `latency ${after.latencyMs} ms after recovery`);
  const playing = samples.filter((s) => s.state === 'playing');
  for (const s of playing) {
    assert.ok(typeof s.latencyMs === 'number' && s.latencyMs > 0 && s.latencyMs < 10_000, `latency ${s.latencyMs} ms`);
  }
  assert.equal(end.width, 640, 'video width');
  assert.equal(end.height, 360, 'video height');
  // While the source is away, hlsd answers held playlist requests with 503 after 3 target
  // durations (RFC 8216bis 6.2.5.2) and Chromium logs each failed request on the console. Those
  // are the outage itself, not errors of the page; anything else is.
  const pageErrors = consoleErrors.filter((m) => !/^Failed to load resource: the server responded with a status of 503/.test(m));
  assert.deepEqual(pageErrors, [], 'console errors');
});
