// hlsd player: plays the LL-HLS stream next to this page and shows how far behind live it is.
//
// Engine: hls.js (low-latency mode) wherever Media Source Extensions exist; the browser's own HLS
// (Safari, iOS) otherwise. Latency is PDT-based: wall clock now minus the capture time of the frame
// on screen, which hlsd writes as EXT-X-PROGRAM-DATE-TIME. hls.js gives that time as
// hls.playingDate; native HLS as video.getStartDate() + currentTime.
//
// Recovery: a fatal hls.js error, a playlist that stops growing (source stopped), an ENDLIST or
// playback that stops advancing all lead to rebuilding the player, retried with backoff, so the
// page picks the stream up again on its own when it comes back.
//
// URL options (all optional):
//   src=stream.m3u8   stream URL, relative to this page
//   muted=1|0         start muted (default 1: browsers only autoplay muted video)
//   autoplay=1|0      start playing on load (default 1)
//   controls=1|0      native video controls (default 1)
//   stats=1|0         the stats line (default 1)
//   poster=URL|0      poster image (default snapshot.jpg next to the stream; 0 for none)
//   engine=auto|hlsjs|native
//   debug=1           hls.js logging to the console
//   expires, prefix, sig  a signed URL's token (hlsd sign): passed on to the stream and poster
//
// window.hlsdStats is the page's state for tests and for a parent page (same origin) to read:
//   state        'loading' | 'playing' | 'paused' | 'stalled' | 'offline' | 'error' | 'unsupported'
//   engine       'hls.js' | 'native' | null
//   latencyMs    PDT-based latency of the frame on screen (null until known)
//   targetLatencyMs  the latency hls.js aims at (PART-HOLD-BACK), null if unknown
//   behindLive   true when the viewer has fallen behind (the "go live" button shows)
//   width, height, bitrateKbps (measured over the last 10 s of loaded media), framesDecoded,
//   framesDropped, stalls (count of playback interruptions after the first frame),
//   stallLog     [{time, reason, currentTime}] of the last 20 stalls,
//   errors       [{time, type, details, fatal, message}] from hls.js (last 100), reloads (player rebuilds),
//   startupMs    from (re)loading the stream to the first advancing frame,
//   message      the text shown to the viewer, or null
(function () {
  'use strict';

  /** Stats refresh and watchdog period. */
  var TICK_MS = 250;
  /** Playback not advancing for this long while it should counts as a stall. */
  var STALL_DETECT_MS = 1000;
  /** Playback not advancing for this long while it should: rebuild the player. */
  var NO_PROGRESS_RESTART_MS = 6000;
  /** Playlist edge not moving for this long (at least; 3 target durations if longer): offline. */
  var EDGE_STALE_MIN_MS = 4000;
  /** Retry delays after failures; the last repeats. Reset after 10 s of good playback. */
  var BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
  var BACKOFF_RESET_MS = 10000;
  /** After a seek, waiting this long for data at the new position is not a stall. */
  var SEEK_GRACE_MS = 1500;
  /** A larger playhead step between two ticks is a seek, not playback. */
  var MAX_PLAY_STEP_S = 1;
  /** A smaller one is the playhead creeping within a stall (a fifth of a tick at normal rate). */
  var MIN_PLAY_STEP_S = TICK_MS / 1000 / 5;
  /** Behind the target latency by more than this: offer "go live". */
  var BEHIND_LIVE_MARGIN_MS = 1500;
  /** Window over which the bitrate is measured. */
  var BITRATE_WINDOW_MS = 10000;
  /** H.264 Constrained Baseline 3.0: the least any H.264 decoder plays. */
  var H264_PROBE = 'video/mp4; codecs="avc1.42E01E"';

  var params = new URLSearchParams(location.search);
  function flag(name, fallback) {
    var v = params.get(name);
    if (v === null) return fallback;
    return !/^(0|false|no|off)$/i.test(v);
  }
  // A signed URL (hlsd sign) opened the page: the stream and poster need the same token.
  var signed = '';
  if (params.get('sig') && params.get('expires') && params.get('prefix')) {
    signed = '?' + new URLSearchParams({
      expires: params.get('expires'), prefix: params.get('prefix'), sig: params.get('sig'),
    }).toString();
  }
  var options = {
    src: params.get('src') || 'stream.m3u8' + signed,
    muted: flag('muted', true),
    autoplay: flag('autoplay', true),
    controls: flag('controls', true),
    stats: flag('stats', true),
    poster: params.get('poster'),
    engine: params.get('engine') || 'auto',
    debug: flag('debug', false),
  };

  var root = document.getElementById('player');
  var video = document.getElementById('video');
  var statsEl = document.getElementById('stats');
  var goLiveEl = document.getElementById('go-live');
  var playEl = document.getElementById('play');
  var messageEl = document.getElementById('message');
  var el = {
    state: document.getElementById('st-state'),
    latency: document.getElementById('st-latency'),
    resolution: document.getElementById('st-resolution'),
    bitrate: document.getElementById('st-bitrate'),
    stalls: document.getElementById('st-stalls'),
  };

  var stats = {
    state: 'loading',
    engine: null,
    hlsVersion: window.Hls ? window.Hls.version : null,
    src: null,
    latencyMs: null,
    targetLatencyMs: null,
    behindLive: false,
    width: 0,
    height: 0,
    bitrateKbps: null,
    framesDecoded: 0,
    framesDropped: 0,
    stalls: 0,
    stallLog: [],
    errors: [],
    reloads: 0,
    startupMs: null,
    message: null,
  };
  window.hlsdStats = stats;

  // Player state (one hls.js instance or native source at a time; rebuilt by start()).
  var engine = null; // 'hls.js' | 'native'
  var hls = null;
  var fatalState = null; // 'unsupported' or 'error': nothing more to try
  var startedAt = 0;
  var teardownAt = -Infinity;
  var restartTimer = null;
  var retryAt = 0;
  var attempt = 0;
  var goodSince = 0;
  var offlineReason = null; // set when the stream is unreachable or stopped
  var userPaused = !options.autoplay;
  var needsGesture = false;
  var lastTime = -1;
  var lastProgressAt = 0;
  var hasPlayed = false;
  var inStall = false;
  var lastSeekAt = -Infinity;
  var lastTickAt = 0;
  var edgeKey = null;
  var edgeChangedAt = 0;
  var targetDurationMs = 0;
  var loaded = []; // {t, bytes, seconds} of media loaded, for the bitrate
  var posterLoaded = false;

  function now() {
    return performance.now();
  }

  // ---- start-up ----

  var srcUrl;
  try {
    srcUrl = new URL(options.src, location.href);
    if (srcUrl.protocol !== 'http:' && srcUrl.protocol !== 'https:') throw new Error('scheme');
    srcUrl = srcUrl.href;
  } catch (e) {
    srcUrl = null;
  }
  stats.src = srcUrl;

  video.muted = options.muted;
  video.controls = options.controls;
  video.autoplay = false; // play() is called by this script, to see and handle a refusal
  statsEl.hidden = !options.stats;
  if (!options.controls) root.classList.add('no-controls');

  engine = pickEngine();
  stats.engine = engine;
  if (!srcUrl) {
    setFatal('error', 'Invalid stream address: ' + options.src);
  } else if (!engine) {
    setFatal('unsupported', mseExists()
      ? 'This browser cannot play H.264 video, which this stream needs. Try a current Chrome, Firefox, Edge or Safari.'
      : 'This browser cannot play HLS video. Try a current Chrome, Firefox, Edge or Safari.');
  } else {
    bindVideoEvents();
    start();
  }
  goLiveEl.addEventListener('click', goLive);
  playEl.addEventListener('click', function () {
    userPaused = false;
    tryPlay();
  });
  document.addEventListener('visibilitychange', function () {
    // Back from a hidden tab: the viewer wants now, not what was buffered while away.
    if (document.visibilityState === 'visible' && stats.behindLive && !userPaused) goLive();
  });
  setInterval(tick, TICK_MS);

  function mediaSourceClass() {
    return window.ManagedMediaSource || window.MediaSource || window.WebKitMediaSource || null;
  }
  function mseExists() {
    return mediaSourceClass() !== null;
  }
  function mseCanPlay(mime) {
    var MS = mediaSourceClass();
    try {
      return !!(MS && MS.isTypeSupported(mime));
    } catch (e) {
      return false;
    }
  }
  function nativeHls() {
    return video.canPlayType('application/vnd.apple.mpegurl') !== '';
  }

  function pickEngine() {
    var hlsjs = !!(window.Hls && window.Hls.isSupported() && mseCanPlay(H264_PROBE));
    var native = nativeHls();
    if (options.engine === 'native') return native ? 'native' : null;
    if (options.engine === 'hlsjs') return hlsjs ? 'hls.js' : null;
    if (hlsjs) return 'hls.js';
    return native ? 'native' : null;
  }

  function setFatal(state, message) {
    fatalState = state;
    clearTimeout(restartTimer);
    restartTimer = null;
    teardown();
    stats.state = state;
    showMessage(message);
    render();
  }

  // ---- player lifecycle ----

  function start() {
    teardown();
    restartTimer = null;
    startedAt = now();
    lastProgressAt = startedAt;
    edgeChangedAt = startedAt;
    edgeKey = null;
    lastTime = -1;
    hasPlayed = false;
    inStall = false;
    goodSince = 0;
    if (engine === 'hls.js') startHlsJs();
    else video.src = srcUrl;
    if (!userPaused) tryPlay();
  }

  function teardown() {
    teardownAt = now();
    if (hls) {
      hls.destroy();
      hls = null;
    } else if (video.getAttribute('src')) {
      video.removeAttribute('src');
      video.load();
    }
  }

  /** Rebuilds the player after `delay` ms (backoff), unless a rebuild is already pending. */
  function scheduleRestart(reason) {
    if (fatalState || restartTimer) return;
    var delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    retryAt = now() + delay;
    restartTimer = setTimeout(function () {
      stats.reloads += 1;
      start();
    }, delay);
    if (options.debug) console.info('hlsd player: restart in ' + delay + ' ms: ' + reason);
  }

  function startHlsJs() {
    var Hls = window.Hls;
    hls = new Hls({
      debug: options.debug,
      lowLatencyMode: true,
      // A live viewer never seeks far back: keep little behind the playhead.
      backBufferLength: 4,
      // Catch up after a hiccup by playing slightly faster, instead of staying behind.
      maxLiveSyncPlaybackRate: 1.5,
      liveDurationInfinity: true,
    });
    hls.on(Hls.Events.MANIFEST_PARSED, onManifestParsed);
    hls.on(Hls.Events.LEVEL_UPDATED, onLevelUpdated);
    hls.on(Hls.Events.FRAG_LOADED, onFragLoaded);
    hls.on(Hls.Events.ERROR, onHlsError);
    hls.loadSource(srcUrl);
    hls.attachMedia(video);
  }

  function onManifestParsed(_event, data) {
    var codecs = (data.levels || []).map(function (l) { return l.videoCodec; }).filter(Boolean);
    var playable = codecs.filter(function (c) { return mseCanPlay('video/mp4; codecs="' + c + '"'); });
    if (codecs.length && !playable.length) {
      setFatal('unsupported', 'This browser cannot play this stream\u2019s H.264 video (' + codecs.join(', ') +
        '). Try a current Chrome, Firefox, Edge or Safari.');
    }
  }

  function onLevelUpdated(_event, data) {
    var d = data.details;
    targetDurationMs = (d.targetduration || 0) * 1000;
    var key = d.endSN + '/' + d.lastPartIndex;
    if (key !== edgeKey) {
      if (offlineReason) lastProgressAt = now(); // the stream is back: give playback time to resume
      edgeKey = key;
      edgeChangedAt = now();
      offlineReason = null;
    }
    if (!d.live) {
      // ENDLIST: the source stopped. Poll for its return.
      offlineReason = 'ended';
      scheduleRestart('playlist ended');
    }
  }

  function onFragLoaded(_event, data) {
    // Parts and whole segments both arrive here (never the same bytes twice). The payload itself
    // is already handed to the transmuxer worker (detached), so count the loader's stats.
    var unit = data.part || data.frag;
    if (!unit || data.frag.sn === 'initSegment' || !unit.stats || !(unit.duration > 0)) return;
    loaded.push({ t: now(), bytes: unit.stats.loaded, seconds: unit.duration });
  }

  function onHlsError(_event, data) {
    var Hls = window.Hls;
    var reason = data.error && data.error.message ? data.error.message : data.reason || '';
    stats.errors.push({ time: new Date().toISOString(), type: data.type, details: data.details, fatal: !!data.fatal, message: String(reason).slice(0, 300) });
    if (stats.errors.length > 100) stats.errors.shift();
    if (!data.fatal) return;
    if (data.details === Hls.ErrorDetails.MANIFEST_INCOMPATIBLE_CODECS_ERROR) {
      setFatal('unsupported', 'This browser cannot play this stream\u2019s video codec. Try a current Chrome, Firefox, Edge or Safari.');
      return;
    }
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) offlineReason = 'unreachable';
    scheduleRestart(data.type + '/' + data.details);
  }

  /**
   * Sets the poster (hlsd's /snapshot.jpg: the latest keyframe) once media has loaded, so that a
   * keyframe exists and the request cannot fail. It shows when playback is paused or blocked,
   * and while the player rebuilds itself after an interruption.
   */
  function loadPoster() {
    if (posterLoaded || options.poster === '0') return;
    posterLoaded = true;
    var img = new Image();
    var url = new URL(options.poster || 'snapshot.jpg' + signed, srcUrl).href;
    img.onload = function () {
      video.poster = url;
    };
    img.src = url;
  }

  function tryPlay() {
    var p = video.play();
    needsGesture = false;
    if (p && p.catch) {
      p.catch(function (e) {
        // Refused without a user gesture (e.g. unmuted autoplay): ask for a click. Other
        // rejections (AbortError when the player is rebuilt) are part of normal operation.
        if (e && e.name === 'NotAllowedError') {
          needsGesture = true;
          render();
        }
      });
    }
  }

  function goLive() {
    userPaused = false;
    if (engine === 'hls.js' && hls && hls.liveSyncPosition !== null) {
      video.currentTime = hls.liveSyncPosition;
    } else if (video.seekable.length) {
      video.currentTime = Math.max(0, video.seekable.end(video.seekable.length - 1) - 1);
    }
    if (video.paused) tryPlay();
  }

  function bindVideoEvents() {
    video.addEventListener('playing', function () {
      // Playback starts counting at the first advancing frame (tick), not here: a playhead
      // parked just before the first buffered frame fires 'playing' then 'waiting' at once.
      lastProgressAt = now();
    });
    video.addEventListener('play', function () {
      userPaused = false;
    });
    video.addEventListener('pause', function () {
      // Pauses from tearing the player down or from the stream ending are not the viewer's.
      if (!video.ended && now() - teardownAt > 500 && video.readyState > 0) userPaused = true;
    });
    video.addEventListener('waiting', function () {
      if (hasPlayed && !video.seeking && !video.paused) beginStall('waiting');
    });
    video.addEventListener('loadeddata', loadPoster);
    video.addEventListener('seeking', function () {
      lastSeekAt = now();
    });
    video.addEventListener('seeked', function () {
      lastSeekAt = now();
    });
    video.addEventListener('ended', function () {
      offlineReason = 'ended';
      scheduleRestart('media ended');
    });
    video.addEventListener('error', function () {
      if (engine !== 'native' || !video.error) return;
      // MEDIA_ERR_SRC_NOT_SUPPORTED with native HLS: usually the playlist cannot be fetched.
      if (video.error.code === 4 || video.error.code === 2) offlineReason = 'unreachable';
      stats.errors.push({ time: new Date().toISOString(), type: 'native', details: 'code ' + video.error.code, fatal: true });
      scheduleRestart('native media error ' + video.error.code);
    });
  }

  function beginStall(reason) {
    // A seek (the viewer's, or "go live") waits for data at its target: not a stall.
    if (inStall || now() - lastSeekAt < SEEK_GRACE_MS) return;
    inStall = true;
    stats.stalls += 1;
    stats.stallLog.push({ time: new Date().toISOString(), reason: reason, currentTime: video.currentTime });
    if (stats.stallLog.length > 20) stats.stallLog.shift();
  }

  // ---- periodic: measure, detect, render ----

  function tick() {
    if (fatalState) return;
    var t = now();
    var wantPlay = !userPaused && !needsGesture;

    var step = video.currentTime - lastTime;
    if (step !== 0) {
      // Playing moves the playhead by about TICK_MS times the rate; seeks jump or go back.
      // (hls.js nudges a stuck playhead forward with small seeks: those are not playback either.)
      var seeked = lastSeekAt >= lastTickAt;
      if (step > MIN_PLAY_STEP_S && step < MAX_PLAY_STEP_S && lastTime >= 0 && !video.paused && !video.seeking && !seeked) {
        if (!hasPlayed) stats.startupMs = Math.round(t - startedAt);
        hasPlayed = true;
        lastProgressAt = t;
        inStall = false;
      }
      lastTime = video.currentTime;
    }
    lastTickAt = t;
    var stuckMs = t - Math.max(lastProgressAt, startedAt);
    if (hasPlayed && wantPlay && !video.seeking && stuckMs > STALL_DETECT_MS) beginStall('no progress');
    if (wantPlay && stuckMs > NO_PROGRESS_RESTART_MS) scheduleRestart('no progress for ' + Math.round(stuckMs) + ' ms');

    // A live playlist whose edge stopped moving: the source is gone.
    var staleMs = Math.max(EDGE_STALE_MIN_MS, 3 * targetDurationMs);
    if (engine === 'hls.js' && edgeKey !== null && t - edgeChangedAt > staleMs) offlineReason = offlineReason || 'stale';

    var playing = hasPlayed && !video.paused && t - lastProgressAt < STALL_DETECT_MS;
    if (playing && !offlineReason) {
      if (!goodSince) goodSince = t;
      if (t - goodSince > BACKOFF_RESET_MS) attempt = 0;
    } else {
      goodSince = 0;
    }

    measure();
    stats.state = restartTimer && !offlineReason ? 'error'
      : offlineReason && !playing ? 'offline'
      : playing ? 'playing'
      : userPaused || needsGesture ? 'paused'
      : hasPlayed ? 'stalled'
      : 'loading';
    render();
  }

  function measure() {
    var t = now();
    var date = null;
    if (engine === 'hls.js' && hls) {
      date = hls.playingDate;
      stats.targetLatencyMs = hls.targetLatency !== null ? Math.round(hls.targetLatency * 1000) : null;
    } else if (engine === 'native' && video.getStartDate) {
      var start = video.getStartDate().getTime();
      if (!isNaN(start)) date = new Date(start + video.currentTime * 1000);
    }
    stats.latencyMs = date && hasPlayed ? Date.now() - date.getTime() : null;
    var target = stats.targetLatencyMs !== null ? stats.targetLatencyMs : 3 * targetDurationMs;
    stats.behindLive = hasPlayed && (userPaused || (stats.latencyMs !== null && stats.latencyMs > target + BEHIND_LIVE_MARGIN_MS));

    stats.width = video.videoWidth;
    stats.height = video.videoHeight;
    if (video.getVideoPlaybackQuality) {
      var q = video.getVideoPlaybackQuality();
      stats.framesDecoded = q.totalVideoFrames;
      stats.framesDropped = q.droppedVideoFrames;
    }

    while (loaded.length && t - loaded[0].t > BITRATE_WINDOW_MS) loaded.shift();
    var bytes = 0;
    var seconds = 0;
    loaded.forEach(function (l) {
      bytes += l.bytes;
      seconds += l.seconds;
    });
    stats.bitrateKbps = seconds > 0 ? Math.round((bytes * 8) / seconds / 1000) : null;
  }

  function render() {
    var s = stats;
    root.dataset.state = s.state;
    if (s.behindLive) root.dataset.behind = '';
    else delete root.dataset.behind;

    var labels = {
      playing: s.behindLive ? 'behind live' : 'live',
      paused: 'paused',
      stalled: 'buffering',
      offline: 'offline',
      loading: 'loading',
      error: 'reconnecting',
      unsupported: 'unsupported',
    };
    el.state.textContent = labels[s.state] || s.state;
    el.latency.textContent = s.latencyMs !== null && s.state !== 'offline' ? (s.latencyMs / 1000).toFixed(2) + ' s latency' : '';
    el.resolution.textContent = s.width ? s.width + '\u00d7' + s.height : '';
    el.bitrate.textContent = s.bitrateKbps !== null && s.state !== 'offline' ? formatBitrate(s.bitrateKbps) : '';
    el.stalls.textContent = hasPlayed ? s.stalls + (s.stalls === 1 ? ' stall' : ' stalls') : '';

    goLiveEl.hidden = fatalState !== null || !s.behindLive || s.state === 'offline';
    playEl.hidden = fatalState !== null || !(needsGesture || (userPaused && !hasPlayed));

    if (fatalState) return;
    if (s.state === 'offline') {
      var wait = restartTimer ? Math.max(1, Math.ceil((retryAt - now()) / 1000)) : 0;
      showMessage(offlineReason === 'unreachable'
        ? 'Stream offline. Retrying' + (wait ? ' in ' + wait + ' s' : '') + '\u2026'
        : 'Stream offline. Waiting for it to come back\u2026');
    } else if (s.state === 'error') {
      showMessage('Playback interrupted. Reconnecting\u2026');
    } else {
      showMessage(null);
    }
  }

  function formatBitrate(kbps) {
    return kbps >= 1000 ? (kbps / 1000).toFixed(1) + ' Mb/s' : kbps + ' kb/s';
  }

  function showMessage(text) {
    stats.message = text;
    if (text === null) {
      messageEl.hidden = true;
      return;
    }
    if (messageEl.textContent !== text) messageEl.textContent = text;
    messageEl.hidden = false;
  }
})();
