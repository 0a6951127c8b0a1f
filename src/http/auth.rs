//! Optional access control (off unless configured): HMAC-SHA256-signed URLs and HTTP basic auth
//! for viewers, basic auth for `/metrics` and `/healthz`.
//!
//! A signed URL carries `expires=UNIX_SECONDS&prefix=PATH&sig=SIG` in its query, where
//! `SIG = base64url(HMAC-SHA256(access-secret, EXPIRES + PREFIX))` without padding. It grants
//! every path under PREFIX (a prefix ending in `/` covers what starts with it; `/a` covers `/a`
//! and `/a/…` but not `/ab`) until EXPIRES. Paths are the public ones, base path included. The
//! same three parameters are appended to every URI in the playlists served to that request
//! ([`crate::hls::playlist`]), so players that send no cookies or headers (Safari, iOS) follow
//! them. Basic credentials are compared in constant time (`subtle`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use super::handlers::{HttpState, Resp};
use base64::Engine;
use http::{header, Request, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::hmac;
use subtle::ConstantTimeEq;

/// Query parameters of a signed URL.
pub const EXPIRES: &str = "expires";
pub const PREFIX: &str = "prefix";
pub const SIG: &str = "sig";

/// Characters of a prefix kept as they are in the query (RFC 3986 unreserved and `/`).
const PREFIX_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no credentials")]
    Missing,
    #[error("malformed signed URL")]
    Malformed,
    #[error("signed URL expired")]
    Expired,
    #[error("signed URL is for another path")]
    OtherPath,
    #[error("bad signature")]
    Forged,
    #[error("wrong user or password")]
    BadPassword,
}

impl Denied {
    /// Label for `hlsd_http_denied_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Malformed => "malformed",
            Denied::Expired => "expired",
            Denied::OtherPath => "other_path",
            Denied::Forged => "forged",
            Denied::BadPassword => "bad_password",
        }
    }
}

/// The message a signature covers: expiry then prefix (the prefix starts with `/`, so the
/// concatenation is unambiguous).
fn message(expires: u64, prefix: &str) -> String {
    format!("{expires}{prefix}")
}

/// The query of a signed URL for `prefix` valid until `expires` (Unix seconds).
pub fn sign(secret: &[u8], prefix: &str, expires: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, message(expires, prefix).as_bytes());
    format!(
        "{EXPIRES}={expires}&{PREFIX}={}&{SIG}={}",
        utf8_percent_encode(prefix, PREFIX_KEEP),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// Whether `prefix` covers `path` (see the module docs for the boundary rule).
pub fn covers(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Checks the signed-URL parameters in `query` for `path` at `now` (Unix seconds). On success
/// returns the parameters to carry into the URIs of a playlist (canonical form).
pub fn verify(secret: &hmac::Key, query: Option<&str>, path: &str, now: u64) -> Result<String, Denied> {
    let (mut expires, mut prefix, mut sig) = (None, None, None);
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            EXPIRES => &mut expires,
            PREFIX => &mut prefix,
            SIG => &mut sig,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(Denied::Malformed); // a parameter twice: which one would a proxy check?
        }
    }
    let (expires, prefix, sig) = match (expires, prefix, sig) {
        (None, None, None) => return Err(Denied::Missing),
        (Some(e), Some(p), Some(s)) => (e, p, s),
        _ => return Err(Denied::Malformed),
    };
    let expires: u64 = expires.parse().map_err(|_| Denied::Malformed)?;
    let prefix = percent_decode_str(prefix).decode_utf8().map_err(|_| Denied::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Denied::Malformed)?;
    if !prefix.starts_with('/') {
        return Err(Denied::Malformed);
    }
    // The signature first: an attacker learns nothing about expiry or prefix rules from a forgery.
    hmac::verify(secret, message(expires, &prefix).as_bytes(), &tag).map_err(|_| Denied::Forged)?;
    if now > expires {
        return Err(Denied::Expired);
    }
    if !covers(&prefix, path) {
        return Err(Denied::OtherPath);
    }
    Ok(format!("{EXPIRES}={expires}&{PREFIX}={}&{SIG}={sig}", utf8_percent_encode(&prefix, PREFIX_KEEP)))
}

/// Expected `user:password` of basic auth.
pub struct Basic {
    expected: Vec<u8>,
    /// `WWW-Authenticate` value.
    pub challenge: &'static str,
}

impl Basic {
    pub fn new(user_password: &str, challenge: &'static str) -> Basic {
        Basic { expected: user_password.as_bytes().to_vec(), challenge }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), Denied> {
        let h = header.ok_or(Denied::Missing)?;
        let h = std::str::from_utf8(h).map_err(|_| Denied::BadPassword)?.trim();
        let (scheme, cred) = h.split_once(' ').ok_or(Denied::BadPassword)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Denied::Missing);
        }
        let given = STANDARD.decode(cred.trim()).map_err(|_| Denied::BadPassword)?;
        if bool::from(given.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(Denied::BadPassword)
        }
    }
}

/// What the HTTP side checks, from the config.
#[derive(Default)]
pub struct Access {
    /// `access-secret`: signed URLs for viewers.
    pub signed: Option<hmac::Key>,
    /// `basic-auth`: viewers.
    pub basic: Option<Basic>,
    /// `metrics-auth`: `/metrics` and `/healthz`.
    pub metrics: Option<Basic>,
}

impl Access {
    pub fn new(access_secret: Option<&str>, basic: Option<&str>, metrics: Option<&str>) -> Access {
        Access {
            signed: access_secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
            basic: basic.map(|b| Basic::new(b, "Basic realm=\"hlsd\", charset=\"UTF-8\"")),
            metrics: metrics.map(|b| Basic::new(b, "Basic realm=\"hlsd metrics\", charset=\"UTF-8\"")),
        }
    }

    /// Viewer check: `Ok(token query to carry, "" for none)`; with both methods configured,
    /// either grants access.
    pub fn viewer(&self, query: Option<&str>, path: &str, authorization: Option<&[u8]>, now: u64) -> Result<String, Denied> {
        let signed_err = match self.signed.as_ref().map(|k| verify(k, query, path, now)) {
            Some(Ok(q)) => return Ok(q),
            Some(Err(e)) => Some(e),
            None => None,
        };
        match (signed_err, self.basic.as_ref().map(|b| b.check(authorization))) {
            (None, None) | (_, Some(Ok(()))) => Ok(String::new()),
            // A present but bad signature is the more useful answer than "no password".
            (Some(e), _) if e != Denied::Missing => Err(e),
            (_, Some(Err(e))) | (Some(e), None) => Err(e),
        }
    }
}

// --- Applied to requests (handlers.rs calls these before routing) ---

/// Checks access; `Ok` carries the signed-URL query to append to playlist URIs ("" for none),
/// `Err` why not and the basic-auth challenge to send, if any.
pub(super) fn guard<B>(state: &HttpState, req: &Request<B>, rest: &str, status_route: bool) -> Result<String, (Denied, Option<&'static str>)> {
    let authz = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let (res, basic) = if status_route {
        let Some(b) = &state.access.metrics else { return Ok(String::new()) };
        (b.check(authz).map(|_| String::new()), Some(b))
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let public = format!("{}{rest}", state.base);
        (state.access.viewer(req.uri().query(), &public, authz, now), state.access.basic.as_ref())
    };
    res.map_err(|e| {
        crate::metrics::get().http_denied.get_or_create(&crate::metrics::ReasonLabels { reason: e.label() }).inc();
        tracing::debug!(path = rest, reason = %e, "request denied");
        let challenge = basic.filter(|_| matches!(e, Denied::Missing | Denied::BadPassword)).map(|b| b.challenge);
        (e, challenge)
    })
}

/// 401 with a basic-auth challenge, else 403.
pub(super) fn denied(e: &Denied, challenge: Option<&'static str>) -> Resp {
    match challenge {
        Some(c) => {
            let mut r = super::handlers::plain(StatusCode::UNAUTHORIZED, "authentication required\n");
            super::handlers::set(&mut r, header::WWW_AUTHENTICATE, c);
            r
        }
        None => super::handlers::plain(StatusCode::FORBIDDEN, &format!("forbidden: {e}\n")),
    }
}

/// Parses a duration like `24h`, `30m`, `7d`, `90s` or `3600` (seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 90s, 30m, 24h, 7d)"))?;
    let mul = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}': unit must be s, m, h or d")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("'{s}' is too long"))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
