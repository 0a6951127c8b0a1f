// Shared by the e2e tests (player.test.mjs) and the latency bench (benches/viewer_latency.mjs):
// start hlsd (or nginx) on a free loopback port, drive Debian's chromium through playwright-core,
// sample the player's window.hlsdStats, and clean every process up again.
//
// Environment:
//   HLSD_BIN       hlsd binary (default: the newer of target/release/hlsd and target/debug/hlsd)
//   HLSD_FIXTURES  directory of the camera captures (default ../shared/fixtures from the repo root)
//   CHROMIUM       browser binary (default /usr/bin/chromium)
//   E2E_ARTIFACTS  where screenshots go (default target/e2e-artifacts)

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PLAYER_DIR = path.join(REPO, 'player');

// playwright-core is installed in player/node_modules (npm ci --prefix player), not beside this file.
const requireFromPlayer = createRequire(path.join(PLAYER_DIR, 'package.json'));
const { chromium } = requireFromPlayer('playwright-core');

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** How long hlsd may take to print its "player at" line (a cold start builds nothing, but CI is slow). */
const STARTUP_TIMEOUT_MS = 30_000;
/** How long a stopped process may take to exit after SIGTERM before it gets SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;

/** HLSD_BIN, else the newer of target/release/hlsd and target/debug/hlsd. */
export function hlsdBin() {
  if (process.env.HLSD_BIN) return path.resolve(process.env.HLSD_BIN);
  const built = ['release', 'debug']
    .map((profile) => path.join(REPO, 'target', profile, 'hlsd'))
    .filter((bin) => existsSync(bin))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!built.length) throw new Error('no hlsd binary: run `cargo build --release` or set HLSD_BIN');
  return built[0];
}

export function fixturesDir() {
  return path.resolve(process.env.HLSD_FIXTURES || path.join(REPO, '..', 'shared', 'fixtures'));
}

export function artifactsDir() {
  const dir = path.resolve(process.env.E2E_ARTIFACTS || path.join(REPO, 'target', 'e2e-artifacts'));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A TCP port that was free a moment ago on 127.0.0.1 (for servers that cannot bind :0 themselves). */
export async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts a process in its own process group (so that everything it starts can be found and
 * cleaned up), keeps the tail of its output, and returns a handle with stop().
 */
export function startProcess(name, bin, args, options = {}) {
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const log = [];
  const keep = (stream, line) => {
    log.push(`[${name} ${stream}] ${line}`);
    if (log.length > 400) log.shift();
  };
  const stdout = createInterface({ input: child.stdout });
  const stderr = createInterface({ input: child.stderr });
  stdout.on('line', (l) => keep('out', l));
  stderr.on('line', (l) => keep('err', l));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
  let stopped = false;
  return {
    name,
    child,
    pid: child.pid,
    stdout,
    log,
    exited,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    /**
     * SIGTERM, wait, SIGKILL if needed; then make sure nothing the process started is left in its
     * process group. Returns the leftovers that had to be killed (a bug in the process) and the
     * exit status.
     */
    async stop() {
      if (stopped) return { leftovers: [], status: await exited };
      stopped = true;
      if (this.running) child.kill('SIGTERM');
      let timer;
      const status = await Promise.race([
        exited,
        new Promise((resolve) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve(exited.then((s) => ({ ...s, killed: true })));
          }, STOP_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
      // Children get a moment to notice that their parent is gone (closed pipes).
      let leftovers = processGroup(child.pid);
      for (let i = 0; i < 20 && leftovers.length; i++) {
        await sleep(100);
        leftovers = processGroup(child.pid);
      }
      if (leftovers.length) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      return { leftovers, status };
    },
  };
}

/** Processes (pid and command line) in process group `pgid`, from /proc. */
export function processGroup(pgid) {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') {
        const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
        found.push({ pid: Number(entry), cmd });
      }
    } catch {
      // the process exited while we looked
    }
  }
  return found;
}

/**
 * Starts hlsd on 127.0.0.1:0 with `args` and waits for the line that names the player URL.
 * Resolves to the process handle with `url` added.
 */
export async function startHlsd(args) {
  const bin = hlsdBin();
  const proc = startProcess('hlsd', bin, ['--listen', '127.0.0.1:0', ...args]);
  let onLine;
  let timer;
  try {
    proc.url = await new Promise((resolve, reject) => {
      onLine = (line) => {
        const m = /player at (https?:\/\/\S+)/.exec(line);
        if (m) resolve(m[1]);
      };
      proc.stdout.on('line', onLine);
      proc.exited.then((s) => reject(new Error(`hlsd exited before listening (${JSON.stringify(s)})\n${proc.log.join('\n')}`)));
      timer = setTimeout(
        () => reject(new Error(`hlsd printed no "player at URL" line within ${STARTUP_TIMEOUT_MS} ms\n${proc.log.join('\n')}`)),
        STARTUP_TIMEOUT_MS,
      );
    });
  } catch (e) {
    await proc.stop();
    throw e;
  } finally {
    clearTimeout(timer);
    proc.stdout.off('line', onLine);
  }
  return proc;
}

/**
 * Resolves once the stream at `baseUrl` has `segments` complete segments, using the server's
 * own LL-HLS blocking playlist reload (_HLS_msn) as the event. Viewers normally join a running
 * stream; this keeps the start-up of the source out of what the tests judge.
 */
export async function waitForSegments(baseUrl, segments, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  const multivariant = await (await fetch(new URL('stream.m3u8', baseUrl))).text();
  const media = multivariant.split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
  if (!media) throw new Error(`no media playlist in the multivariant playlist:\n${multivariant}`);
  const url = new URL(media, new URL('stream.m3u8', baseUrl));
  // One segment at a time: asking more than two segments ahead is a 400 (RFC 8216bis 6.2.5.2).
  let msn = 0;
  let last = '';
  while (Date.now() < deadline) {
    url.searchParams.set('_HLS_msn', String(msn));
    const res = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
    last = `${res.status} ${await res.text()}`;
    // 200 once segment `msn` exists; 503 when the server gave up holding (ask again).
    if (res.status === 200) {
      if ((last.match(/#EXTINF/g) || []).length >= segments) return;
      msn += 1;
    } else if (res.status !== 503) {
      break;
    }
  }
  throw new Error(`stream did not reach ${segments} segments within ${timeoutMs} ms; last answer: ${last.slice(0, 2000)}`);
}

/** Launches chromium with a fresh profile; close() also removes the profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), 'hlsd-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 720 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `url` in a new page and collects console errors and uncaught exceptions (and, in
 * consoleLog, every console message).
 */
export async function openPlayer(browser, url) {
  const page = await browser.context.newPage();
  const consoleErrors = [];
  const consoleLog = []; // everything, for a failure's artifacts (with ?debug=1: hls.js's log)
  const t0 = Date.now();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
    consoleLog.push(`${new Date().toISOString()} +${Date.now() - t0} ${m.type()} ${m.text()}`);
    if (consoleLog.length > 50_000) consoleLog.shift();
  });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  await page.goto(url, { waitUntil: 'load' });
  return { page, consoleErrors, consoleLog };
}

/** The player's stats plus the video element's clock. */
export function readStats(page) {
  return page.evaluate(() => {
    const s = window.hlsdStats;
    if (!s) return null;
    const v = document.querySelector('video');
    return { ...s, errors: s.errors.slice(), currentTime: v.currentTime, at: Date.now() };
  });
}

/** Polls the stats until `predicate` holds or `timeoutMs` passes; returns the last stats. */
export async function waitForStats(page, predicate, timeoutMs, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await readStats(page);
    if (last && predicate(last)) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms; last stats: ${JSON.stringify(last)}`);
}

/** Samples the stats every `intervalMs` for `durationMs` (a bounded loop: measuring, not waiting). */
export async function sampleStats(page, durationMs, intervalMs = 500) {
  const samples = [];
  const end = Date.now() + durationMs;
  while (Date.now() < end) {
    samples.push(await readStats(page));
    await sleep(intervalMs);
  }
  samples.push(await readStats(page));
  return samples;
}

export function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
