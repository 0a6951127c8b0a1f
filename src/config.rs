//! Configuration: one struct that is both the clap command line and the serde TOML file.
//!
//! Precedence: built-in defaults < `--config FILE` < environment (`HLSD_*`) < command-line flags.
//! TOML keys are the long flag names (`segment-duration = 1.0`); unknown keys are rejected.

use crate::secret::Secret;
use crate::source::SourceSpec;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {path}: {err}")]
    Parse { path: PathBuf, err: String },
    #[error("invalid setting {key}: {msg}")]
    Invalid { key: &'static str, msg: String },
}

/// hlsd: low-latency HLS (LL-HLS) origin for H.264 cameras.
///
/// With no arguments, serves the built-in test source on 0.0.0.0:8080 and prints the player URL.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "hlsd", version, about, long_about = None)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Where H.264 comes from: testsrc, stdin, file:PATH, exec:COMMAND, tcp://HOST:PORT or
    /// v4l2:/dev/videoN (`hlsd devices` lists V4L2 cameras and encoders).
    /// Secrets in it (URL passwords, keys, `-password X`) are masked in logs and errors.
    #[arg(long, env = "HLSD_SOURCE", default_value = "testsrc", hide_env_values = true)]
    pub source: crate::secret::Masked,

    /// Address to listen on for HTTP (HTTP/1.1 and HTTP/2 cleartext; HTTPS with --tls-cert).
    #[arg(long, env = "HLSD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Path prefix when served behind a reverse proxy (e.g. /cams/birdbox); requests must start
    /// with it. Playlists use relative URIs, so a proxy that strips the prefix works too.
    #[arg(long, env = "HLSD_BASE_PATH", default_value = "")]
    pub base_path: String,

    /// TOML configuration file; its keys are these long option names.
    #[arg(long, env = "HLSD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Segment target in seconds. Segments are cut at the first IDR at or after it, so the
    /// encoder's keyframe interval should be a divisor of it (rpicam-vid --intra, ffmpeg -g).
    #[arg(long, env = "HLSD_SEGMENT_DURATION", global = true, default_value_t = 1.0)]
    pub segment_duration: f64,

    /// Part target in seconds (rounded down to whole frames; at least one frame).
    #[arg(long, env = "HLSD_PART_DURATION", global = true, default_value_t = 0.2)]
    pub part_duration: f64,

    /// Segments listed in the live playlist (at least 6).
    #[arg(long, env = "HLSD_WINDOW", default_value_t = 10)]
    pub window: usize,

    /// Frame rate of the input when its SPS has no timing info (e.g. 25 for raspivid streams).
    #[arg(long, env = "HLSD_FRAMERATE", global = true)]
    pub framerate: Option<f64>,

    /// MPEG-TS input: the program number to use (default: the first program in the PAT).
    #[arg(long, env = "HLSD_TS_PROGRAM", global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub ts_program: Option<u16>,

    /// Replay file sources as fast as possible instead of in real time.
    #[arg(long, env = "HLSD_NO_PACE")]
    pub no_pace: bool,

    /// Loop file sources.
    #[arg(long = "loop", env = "HLSD_LOOP")]
    #[serde(rename = "loop")]
    pub looped: bool,

    /// Milliseconds of input silence after which a frame being read is taken as complete
    /// (stdin/exec/tcp; doubles by itself if the input turns out to pause inside frames);
    /// 0 waits for the next frame's start code instead (one frame more delay).
    #[arg(long, env = "HLSD_IDLE_FLUSH_MS", default_value_t = 1.0)]
    pub idle_flush_ms: f64,

    /// Seconds without data after which exec sources are restarted and tcp sources reconnected.
    #[arg(long, env = "HLSD_STALL_TIMEOUT", default_value_t = 10.0)]
    pub stall_timeout: f64,

    /// Test source (and v4l2 camera) width.
    #[arg(long, env = "HLSD_WIDTH", default_value_t = 1280)]
    pub width: u32,
    /// Test source (and v4l2 camera) height.
    #[arg(long, env = "HLSD_HEIGHT", default_value_t = 720)]
    pub height: u32,
    /// Test source (and v4l2 camera) frame rate.
    #[arg(long, env = "HLSD_FPS", default_value_t = 30)]
    pub fps: u32,
    /// Test source keyframe (IDR) interval in frames.
    #[arg(long, env = "HLSD_KEYINT", default_value_t = 30)]
    pub keyint: u32,
    /// Test source bitrate in bits per second.
    #[arg(long, env = "HLSD_BITRATE", default_value_t = 2_000_000)]
    pub bitrate: u32,

    /// v4l2: encoder bitrate in bits per second (default: the device's own).
    #[arg(long, env = "HLSD_V4L2_BITRATE")]
    pub v4l2_bitrate: Option<u32>,
    /// v4l2: IDR interval in frames (default: fps × segment-duration, one GOP per segment).
    #[arg(long, env = "HLSD_V4L2_IDR_INTERVAL")]
    pub v4l2_idr_interval: Option<u32>,
    /// v4l2: H.264 profile: baseline, constrained-baseline, main, extended or high (default: the device's).
    #[arg(long, env = "HLSD_V4L2_PROFILE")]
    pub v4l2_profile: Option<String>,
    /// v4l2: H.264 level, e.g. 4 or 4.1 (default: the device's).
    #[arg(long, env = "HLSD_V4L2_LEVEL")]
    pub v4l2_level: Option<String>,
    /// v4l2: ask the encoder to repeat SPS/PPS before every IDR (true or false).
    #[arg(long, env = "HLSD_V4L2_REPEAT_HEADERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub v4l2_repeat_headers: bool,
    /// v4l2: M2M H.264 encoder for cameras that give raw frames (default: the first one found,
    /// /dev/video11 on a Pi 4).
    #[arg(long, env = "HLSD_V4L2_ENCODER")]
    pub v4l2_encoder: Option<PathBuf>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 via ALPN) instead of cleartext.
    #[arg(long, env = "HLSD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert. Both files are reloaded on SIGHUP and when they change.
    #[arg(long, env = "HLSD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Secret for signed viewer URLs (HMAC-SHA256, at least 16 bytes): when set, viewers need a
    /// URL from `hlsd sign`. Set it in the config file or HLSD_ACCESS_SECRET (a flag shows in `ps`).
    #[arg(long, env = "HLSD_ACCESS_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub access_secret: Option<Secret>,
    /// HTTP basic auth for viewers, USER:PASSWORD (config file or HLSD_BASIC_AUTH; a flag shows in `ps`).
    #[arg(long, env = "HLSD_BASIC_AUTH", hide_env_values = true, value_name = "USER:PASSWORD")]
    pub basic_auth: Option<Secret>,
    /// Serve /metrics and /healthz only on this address (plain HTTP); the main listener then 404s them.
    #[arg(long, env = "HLSD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// HTTP basic auth for /metrics and /healthz, USER:PASSWORD (config file or HLSD_METRICS_AUTH).
    #[arg(long, env = "HLSD_METRICS_AUTH", hide_env_values = true, value_name = "USER:PASSWORD")]
    pub metrics_auth: Option<Secret>,

    /// Seconds an idle client connection is kept, and the limit for reading a request header.
    #[arg(long, env = "HLSD_HTTP_TIMEOUT", default_value_t = 30.0)]
    pub http_timeout: f64,
    /// Seconds from accepting a connection to its first byte; also bounds the TLS handshake.
    #[arg(long, env = "HLSD_HTTP_FIRST_BYTE_TIMEOUT", default_value_t = 10.0)]
    pub http_first_byte_timeout: f64,
    /// Seconds a response may make no progress (the client stopped reading) before the
    /// connection is closed. Held requests waiting for data do not count.
    #[arg(long, env = "HLSD_HTTP_WRITE_TIMEOUT", default_value_t = 20.0)]
    pub http_write_timeout: f64,
    /// Most open client connections; lowered to the open-file limit minus a reserve (logged).
    #[arg(long, env = "HLSD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most open connections per client address (IPv6: per /64); 0 = no limit.
    #[arg(long, env = "HLSD_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,
    /// Addresses exempt from max-connections-per-ip (reverse proxies), comma-separated.
    #[arg(long, env = "HLSD_TRUSTED_PROXIES", value_delimiter = ',', default_value = "127.0.0.1,::1")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most requests held at once (blocking playlist reloads and preload-hinted parts, about
    /// 1-2 per LL-HLS viewer); beyond it they are answered 503 with Retry-After.
    #[arg(long, env = "HLSD_MAX_HELD_REQUESTS", default_value_t = 8192)]
    pub max_held_requests: usize,

    /// Also publish the stream to this RTMP/RTMPS ingest URL (repeatable; HLSD_RTMP takes
    /// space-separated URLs), e.g. rtmp://a.rtmp.youtube.com/live2/STREAM-KEY. In the config file:
    /// [[rtmp]] tables with `url`. Stream keys are masked in logs and metrics.
    #[arg(long = "rtmp", value_name = "URL", env = "HLSD_RTMP", hide_env_values = true, value_delimiter = ' ',
        value_parser = crate::sink::rtmp::DestinationParser)]
    pub rtmp: Vec<crate::sink::rtmp::Destination>,

    /// Audio sent to RTMP destinations: none (video only) or silent (a silent AAC track, for
    /// ingest servers such as YouTube that expect audio).
    #[arg(long, env = "HLSD_RTMP_AUDIO", value_enum, default_value = "none")]
    pub rtmp_audio: crate::sink::rtmp::RtmpAudio,

    /// Also publish the stream as files (repeatable): dir:PATH (for nginx, Caddy or any static
    /// server) or s3://BUCKET/PREFIX (S3-compatible storage). In the config file: [[output]]
    /// tables (url, endpoint, region, path-style, prefix, retention, parts, concurrency, queue,
    /// credentials); see README "Publishing to disk and S3".
    #[arg(long = "output", env = "HLSD_OUTPUT", hide_env_values = true, value_name = "dir:PATH|s3://BUCKET/PREFIX", value_delimiter = ' ')]
    pub output: Vec<crate::sink::storage::config::OutputSpecEntry>,

    /// S3 endpoint of non-AWS stores (MinIO, R2, B2, Garage...), e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<crate::secret::Masked>,

    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Segment an Annex-B H.264 file into a VOD HLS stream (OUTDIR/stream.m3u8), as fast as possible.
    Segment {
        /// Input .h264 file (Annex-B).
        input: PathBuf,
        /// Output directory (created if missing).
        outdir: PathBuf,
    },
    /// List V4L2 video devices (cameras, hardware encoders) with their formats, sizes, frame
    /// rates and encoder controls.
    Devices,
    /// Print a signed viewer URL (needs access-secret: config file or HLSD_ACCESS_SECRET).
    Sign {
        /// Path prefix the URL grants (public path, base path included), e.g. / or /cams/birdbox/.
        #[arg(long, default_value = "/")]
        prefix: String,
        /// How long the URL is valid: 90s, 30m, 24h, 7d or plain seconds.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// Public URL of hlsd to print (default: from --listen, --base-path and --tls-cert).
        #[arg(long)]
        url: Option<String>,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["hlsd"])
    }
}

impl Config {
    /// Parses the command line (exiting with clap's message on a usage error), merges the config
    /// file, and validates.
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Config::command().get_matches_from(args);
        let cli = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let Some(path) = cli.config.clone() else {
            cli.validate()?;
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path).map_err(|err| ConfigError::Read { path: path.clone(), err })?;
        // Errors name line, column and key, never a value (crate::config_file).
        let parse_err = |e: toml::de::Error| ConfigError::Parse { path: path.clone(), err: crate::config_file::describe(&text, &e) };
        toml::from_str::<Config>(&text).map_err(parse_err)?;
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_err)?;
        let cli_table = toml::Table::try_from(&cli)
            .map_err(|e| ConfigError::Parse { path: path.clone(), err: crate::config_file::scrub(&e.to_string()) })?;
        for id in matches.ids() {
            let explicit = matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            let key = if id.as_str() == "looped" { "loop".to_string() } else { id.as_str().replace('_', "-") };
            if explicit {
                if let Some(v) = cli_table.get(&key) {
                    table.insert(key, v.clone());
                }
            }
        }
        let mut cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { path: path.clone(), err: crate::config_file::scrub(e.message()) })?;
        cfg.config = Some(path);
        cfg.command = cli.command;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and the source spec; messages say what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, msg: String| Err(ConfigError::Invalid { key, msg: crate::secret::mask(&msg) });
        if let Err(msg) = self.source.parse::<SourceSpec>() {
            return bad("source", msg);
        }
        for (key, value, range) in self.float_options() {
            finite_in(key, value, range)?;
        }
        if self.part_duration > self.segment_duration / 2.0 {
            return bad("part-duration", format!("{} s must be at most half the segment duration", self.part_duration));
        }
        if self.ts_program == Some(0) {
            return bad("ts-program", "0 is not a program number (it names the NIT in the PAT)".into());
        }
        if self.window < 6 {
            return bad("window", format!("{} segments: at least 6 are needed (Apple HLS authoring spec 8.11)", self.window));
        }
        if self.width < 16 || self.height < 16 || self.width % 2 == 1 || self.height % 2 == 1 || self.width > 4096 || self.height > 2304 {
            return bad("width/height", format!("{}x{} must be even and within 16x16..4096x2304", self.width, self.height));
        }
        if !(1..=120).contains(&self.fps) || self.keyint == 0 || self.bitrate < 10_000 {
            return bad("fps/keyint/bitrate", format!("fps {} (1..120), keyint {} (>0), bitrate {} (>=10000)", self.fps, self.keyint, self.bitrate));
        }
        if let Some(Err(msg)) = self.v4l2_profile.as_deref().map(crate::source::v4l2::controls::parse_profile) {
            return bad("v4l2-profile", msg);
        }
        if let Some(Err(msg)) = self.v4l2_level.as_deref().map(crate::source::v4l2::controls::parse_level) {
            return bad("v4l2-level", msg);
        }
        if self.v4l2_bitrate.is_some_and(|b| b < 10_000) || self.v4l2_idr_interval == Some(0) {
            return bad("v4l2-bitrate/v4l2-idr-interval", "bitrate must be at least 10000, the IDR interval at least 1".into());
        }
        if !self.base_path.is_empty() && (!self.base_path.starts_with('/') || self.base_path.contains("..")) {
            return bad("base-path", format!("'{}' must start with / (e.g. /cams/birdbox)", self.base_path));
        }
        if self.max_connections == 0 || self.max_held_requests == 0 {
            return bad("max-connections/max-held-requests", "must be at least 1".into());
        }
        if self.access_secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
            return bad("access-secret", "must be at least 16 bytes (e.g. `openssl rand -base64 32`)".into());
        }
        for (key, v) in [("basic-auth", &self.basic_auth), ("metrics-auth", &self.metrics_auth)] {
            if v.as_ref().is_some_and(|v| v.expose().split_once(':').is_none_or(|(u, p)| u.is_empty() || p.is_empty())) {
                return bad(key, "must be USER:PASSWORD".into());
            }
        }
        if self.metrics_listen.is_some_and(|m| m == self.listen && m.port() != 0) {
            return bad("metrics-listen", "must differ from listen".into());
        }
        for o in &self.output {
            if let Err(msg) = o.0.validate() {
                return bad("output", msg);
            }
        }
        Ok(())
    }

    /// Every floating-point option with its allowed range. All of them go through [`finite_in`],
    /// so none can be NaN or infinite (which would panic later in `Duration::from_secs_f64`).
    fn float_options(&self) -> Vec<(&'static str, f64, RangeInclusive<f64>)> {
        let mut v = vec![
            ("segment-duration", self.segment_duration, 0.5..=10.0),
            ("part-duration", self.part_duration, 0.03..=2.0),
            ("idle-flush-ms", self.idle_flush_ms, 0.0..=50.0),
            ("stall-timeout", self.stall_timeout, 0.1..=86_400.0),
            ("http-timeout", self.http_timeout, 0.1..=3_600.0),
            ("http-first-byte-timeout", self.http_first_byte_timeout, 0.1..=3_600.0),
            ("http-write-timeout", self.http_write_timeout, 0.1..=3_600.0),
        ];
        if let Some(f) = self.framerate {
            v.push(("framerate", f, 1.0..=240.0));
        }
        v
    }

    /// Base path without a trailing slash ("" for none).
    pub fn base(&self) -> &str {
        self.base_path.trim_end_matches('/')
    }
}

/// Requires a float option to be finite and within `range` (NaN and ±inf are rejected).
fn finite_in(key: &'static str, value: f64, range: RangeInclusive<f64>) -> Result<(), ConfigError> {
    if value.is_finite() && range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        msg: format!("{value} must be a finite number within {}..{}", range.start(), range.end()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file_merge() {
        let c = Config::load_from(["hlsd"]).unwrap();
        assert_eq!(c.source, "testsrc");
        assert_eq!(c.listen.port(), 8080);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(&p, "source = \"file:/x.h264\"\nsegment-duration = 2.0\nloop = true\nwindow = 8\n").unwrap();
        let c = Config::load_from(["hlsd", "--config", p.to_str().unwrap(), "--window", "7"]).unwrap();
        assert_eq!(c.source, "file:/x.h264");
        assert_eq!(c.segment_duration, 2.0);
        assert!(c.looped);
        assert_eq!(c.window, 7, "command line beats the file");
        std::fs::write(&p, "segment_duraton = 2.0\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("unknown field") && e.contains("segment_duraton"), "{e}");
        let e = Config::load_from(["hlsd", "--window", "3"]).unwrap_err().to_string();
        assert!(e.contains("window"), "{e}");
        let e = Config::load_from(["hlsd", "--source", "rtsp://x"]).unwrap_err().to_string();
        assert!(e.contains("unknown source"), "{e}");
    }

    #[test]
    fn http_limits_validated_and_read_from_file() {
        let c = Config::load_from(["hlsd"]).unwrap();
        assert_eq!(c.trusted_proxies, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap(), "::1".parse().unwrap()]);
        for (flag, v) in [("--http-write-timeout", "nan"), ("--http-first-byte-timeout", "inf"), ("--http-timeout", "0")] {
            let e = Config::load_from(["hlsd", flag, v]).unwrap_err().to_string();
            assert!(e.contains(flag.trim_start_matches('-')), "{flag} {v}: {e}");
        }
        assert!(Config::load_from(["hlsd", "--max-held-requests", "0"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(&p, "trusted-proxies = [\"10.0.0.1\"]\nmax-connections-per-ip = 0\nhttp-write-timeout = 5.0\n").unwrap();
        let c = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(c.trusted_proxies, vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!((c.max_connections_per_ip, c.http_write_timeout), (0, 5.0));
        let c = Config::load_from(["hlsd", "--trusted-proxies", "10.1.1.1,::1"]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn every_float_option_rejects_nan_inf_and_negative() {
        let base = Config::load_from(["hlsd"]).unwrap();
        let floats = base.float_options();
        assert_eq!(floats.len(), 7, "framerate is only listed when set");
        for flag in [
            "segment-duration", "part-duration", "idle-flush-ms", "stall-timeout", "http-timeout",
            "http-first-byte-timeout", "http-write-timeout", "framerate",
        ] {
            for bad in ["nan", "NaN", "inf", "-inf", "infinity", "-1", "1e308"] {
                let arg = format!("--{flag}={bad}");
                let e = Config::load_from(["hlsd", arg.as_str()]).unwrap_err().to_string();
                assert!(e.contains(flag) && e.contains("finite"), "{arg}: {e}");
            }
        }
        // The same check applies to config-file values.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(&p, "http-timeout = nan\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("http-timeout") && e.contains("finite"), "{e}");
        std::fs::write(&p, "stall-timeout = inf\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("stall-timeout"), "{e}");
        let ok = Config::load_from(["hlsd", "--http-timeout", "0.5", "--stall-timeout", "60"]).unwrap();
        assert_eq!(ok.http_timeout, 0.5);
    }
}
