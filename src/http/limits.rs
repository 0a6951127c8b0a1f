//! HTTP limits: [`HttpLimits`] from the config (timeouts, the global connection limit derived
//! from the open-file limit, the per-IP limit with trusted-proxy exemptions), the per-IP
//! connection table, the cap on held requests, and a rate-limited warning for limits that trigger.
//!
//! README "Limits and timeouts" lists every limit, its default, what happens and its metric.

use super::conn::Timeouts;
use crate::config::Config;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// File descriptors kept free of client connections: encoder pipes, disk outputs, RTMP and S3
/// sockets, the listener, V4L2 devices, log and accept headroom.
pub const FD_RESERVE: u64 = 256;
/// Fewest client connections whatever the open-file limit says.
const MIN_CONNECTIONS: usize = 16;

/// Limits of the HTTP servers (`serve`). The connection slots and the per-IP table live here, so
/// listeners that share one `HttpLimits` (the main one and `metrics-listen`) share the budget.
#[derive(Debug)]
pub struct HttpLimits {
    pub timeouts: Timeouts,
    /// Effective global connection limit (configured, lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Connections per client address (IPv6: per /64); 0 = no limit.
    pub per_ip: usize,
    /// Addresses exempt from the per-IP limit (reverse proxies).
    pub trusted: Vec<IpAddr>,
    /// One permit per open connection, `max_connections` in all.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Open connections per client address.
    pub per_ip_open: Arc<PerIp>,
}

impl HttpLimits {
    /// From the config; raises the open-file soft limit to the hard limit first (logged).
    pub fn from_config(cfg: &Config) -> HttpLimits {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(30));
        let nofile = raise_nofile();
        let max_connections = effective_connections(cfg.max_connections, nofile);
        if max_connections < cfg.max_connections {
            tracing::warn!(
                configured = cfg.max_connections,
                effective = max_connections,
                open_file_limit = nofile,
                reserve = FD_RESERVE,
                "max-connections lowered to fit the open-file limit (raise `ulimit -Hn` / LimitNOFILE=)"
            );
        } else {
            tracing::info!(max_connections, open_file_limit = nofile, reserve = FD_RESERVE, "connection limit");
        }
        crate::metrics::get().http_max_connections.set(max_connections as i64);
        HttpLimits {
            timeouts: Timeouts {
                first_byte: secs(cfg.http_first_byte_timeout),
                idle: secs(cfg.http_timeout),
                write: secs(cfg.http_write_timeout),
            },
            max_connections,
            per_ip: cfg.max_connections_per_ip,
            trusted: cfg.trusted_proxies.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            per_ip_open: Arc::default(),
        }
    }
}

/// Listen backlog: a burst of connects waits here instead of being dropped (and retried by the
/// client a second later); the accept loop drains it, closing what is over a limit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`LISTEN_BACKLOG`] (tokio's `bind` uses 1024).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}

/// min(configured, open-file limit − reserve), at least [`MIN_CONNECTIONS`].
pub fn effective_connections(configured: usize, nofile: u64) -> usize {
    let fit = nofile.saturating_sub(FD_RESERVE).max(MIN_CONNECTIONS as u64);
    configured.min(usize::try_from(fit).unwrap_or(usize::MAX))
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return 1024;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on 32-bit ARM (Pi OS armhf)
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit");
        return soft;
    }
    lim.rlim_cur = lim.rlim_max;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::warn!(soft, hard, error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        return soft;
    }
    tracing::info!(soft_before = soft, soft = hard, hard, "raised the open-file soft limit to the hard limit");
    hard
}

/// The key a client is limited by: its address, IPv4-mapped IPv6 as IPv4, IPv6 by /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Open connections per client key.
#[derive(Debug, Default)]
pub struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    /// Counts a connection from `ip` unless it already has `max` (None then).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpGuard> {
        let key = client_key(ip);
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpGuard { table: self.clone(), key })
    }

    pub fn count(&self, ip: IpAddr) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&client_key(ip)).copied().unwrap_or(0)
    }
}

/// One counted connection; dropping it uncounts.
pub struct IpGuard {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut m = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// Global cap on held requests (blocking playlist reloads, preload-hinted parts).
#[derive(Debug)]
pub struct HeldLimit {
    max: usize,
    held: AtomicUsize,
}

impl HeldLimit {
    pub fn new(max: usize) -> Arc<HeldLimit> {
        Arc::new(HeldLimit { max, held: AtomicUsize::new(0) })
    }

    /// A slot for one held request, or None when `max` are held.
    pub fn try_hold(self: &Arc<Self>) -> Option<HeldSlot> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()?;
        crate::metrics::get().http_blocked.inc();
        Some(HeldSlot(self.clone()))
    }
}

/// One held request; dropping it frees the slot.
pub struct HeldSlot(Arc<HeldLimit>);

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::get().http_blocked.dec();
    }
}

/// A warning logged at most once per interval, with how often it was suppressed meanwhile.
pub struct RateLimited {
    interval_ms: u64,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimited {
    pub const fn new(interval: Duration) -> RateLimited {
        RateLimited { interval_ms: interval.as_millis() as u64, last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed since the last log)` when a log line is due now.
    pub fn due(&self) -> Option<u64> {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + self.interval_ms;
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last == 0 || now >= last + self.interval_ms)
            && self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_keys() {
        assert_eq!(effective_connections(4096, 1024), 768);
        assert_eq!(effective_connections(100, 1_048_576), 100);
        assert_eq!(effective_connections(4096, 10), MIN_CONNECTIONS);
        let v6a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(v6a), client_key(v6b), "one /64 is one client");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());

        let t = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = t.try_acquire(ip, 2).unwrap();
        let _b = t.try_acquire(ip, 2).unwrap();
        assert!(t.try_acquire(ip, 2).is_none());
        assert!(t.try_acquire("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert_eq!(t.count(ip), 1);
        assert!(t.try_acquire(ip, 2).is_some());

        let h = HeldLimit::new(2);
        let (x, _y) = (h.try_hold().unwrap(), h.try_hold().unwrap());
        assert!(h.try_hold().is_none());
        drop(x);
        assert!(h.try_hold().is_some());

        let r = RateLimited::new(Duration::from_secs(60));
        assert_eq!(r.due(), Some(0));
        assert_eq!(r.due(), None);
        assert_eq!(r.due(), None);
    }
}
