//! The `hlsd` binary: configuration, logging, and the run loop until Ctrl-C / SIGTERM.

use hlsd::config::{Command, Config};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // h264-reader logs every byte it skips in garbage input at error level: keep it quiet.
            tracing_subscriber::EnvFilter::try_from_env("HLSD_LOG")
                .unwrap_or_else(|_| "info".into())
                .add_directive("h264_reader=off".parse().expect("static directive")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a file, a pipe or journald gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cfg = match Config::load_from(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hlsd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cfg.command.clone() {
        Some(Command::Segment { input, outdir }) => segment(&cfg, &input, &outdir),
        Some(Command::Sign { prefix, expires, url }) => sign(&cfg, &prefix, &expires, url.as_deref()),
        Some(Command::Devices) => {
            print!("{}", hlsd::source::v4l2::devices::report());
            Ok(())
        }
        // The offline commands need no async runtime; the server gets two worker threads.
        None => match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt.block_on(serve(cfg)),
            Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hlsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = hlsd::http::limits::listen(cfg.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e} (is another server using it? try --listen 0.0.0.0:8081)", cfg.listen))?;
    hlsd::app::run(cfg, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn segment(cfg: &Config, input: &std::path::Path, outdir: &std::path::Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let frame_duration = cfg.framerate.map(hlsd::h264::frame_duration_for_fps);
    let s = hlsd::hls::vod::segment_file(input, outdir, hlsd::app::segmenter_config(cfg), frame_duration)?;
    eprintln!(
        "hlsd: wrote {} segments ({} frames, {:.1} MB, TARGETDURATION {}) to {} in {:.2} s",
        s.segments,
        s.frames,
        s.bytes as f64 / 1e6,
        s.target_duration,
        outdir.join("stream.m3u8").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `hlsd sign`: prints the signed multivariant playlist URL, then the signed player page URL.
fn sign(cfg: &Config, prefix: &str, expires: &str, url: Option<&str>) -> anyhow::Result<()> {
    let secret = cfg.access_secret.as_ref().ok_or_else(|| {
        anyhow::anyhow!("access-secret is not set (config file, HLSD_ACCESS_SECRET, or --access-secret)")
    })?;
    if !prefix.starts_with('/') {
        anyhow::bail!("--prefix must start with / (e.g. / or /cams/birdbox/)");
    }
    let valid_for = hlsd::http::auth::parse_duration(expires).map_err(|e| anyhow::anyhow!("--expires {e}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let q = hlsd::http::auth::sign(secret.expose().as_bytes(), prefix, now.saturating_add(valid_for));
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let scheme = if cfg.tls_cert.is_some() { "https" } else { "http" };
            let ip = cfg.listen.ip();
            let host = if ip.is_unspecified() { "127.0.0.1".to_string() } else if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
            format!("{scheme}://{host}:{}{}", cfg.listen.port(), cfg.base())
        }
    };
    println!("{base}/stream.m3u8?{q}");
    println!("{base}/?{q}");
    Ok(())
}
