//! RTMP destination URLs: parsing into host/app/stream key, and the masked form that logs,
//! metrics, `Debug` output and error messages use instead (a stream key lets anyone broadcast on
//! the owner's channel, so it must never be printed).
//!
//! `rtmp[s]://HOST[:PORT]/APP[/INSTANCE]/STREAM-KEY`: as in ffmpeg and OBS, the last path
//! component (with any `?query`) is the stream key (the `publish` name) and everything between
//! the host and it is the application (the `connect` app). Default ports: 1935 (rtmp), 443 (rtmps).

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// What replaces the stream key in everything printed.
pub const KEY_MASK: &str = "***";

/// Why a destination URL cannot be used; never contains the stream key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("RTMP URL must start with rtmp:// or rtmps:// (got {0:?})")]
    Scheme(String),
    #[error("RTMP URL {0}: user:password@ credentials are not supported; put the key in the path")]
    Credentials(String),
    #[error("RTMP URL {0}: missing or malformed host (an IPv6 address goes in brackets: rtmp://[::1]/app/KEY)")]
    Host(String),
    #[error("RTMP URL {0}: bad port {1:?}")]
    Port(String, String),
    #[error("RTMP URL {0}: expected /APP/STREAM-KEY after the host (e.g. rtmp://a.rtmp.youtube.com/live2/KEY)")]
    Path(String),
}

/// A parsed `rtmp://` or `rtmps://` URL. `Debug` and `Display` show the masked form only.
#[derive(Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    raw: String,
    /// RTMPS: RTMP inside TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Application name sent in `connect` (may contain `/`).
    pub app: String,
    key: String,
}

impl RtmpUrl {
    /// The URL as given, stream key included: only for the connection itself.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The stream key (the `publish` name): only for the connection itself.
    pub fn stream_key(&self) -> &str {
        &self.key
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "rtmps"
        } else {
            "rtmp"
        }
    }

    fn host_port(&self, always_port: bool) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 1935 };
        if always_port || self.port != default {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }

    /// `rtmp://host/app/***`: what logs and metrics show.
    pub fn masked(&self) -> String {
        format!(
            "{}://{}/{}/{KEY_MASK}",
            self.scheme(),
            self.host_port(false),
            self.app
        )
    }

    /// The `tcUrl` of the `connect` command (`rtmp://host:port/app`, no key); some ingest
    /// servers (YouTube among them) require it.
    pub fn tc_url(&self) -> String {
        format!("{}://{}/{}", self.scheme(), self.host_port(true), self.app)
    }
}

impl FromStr for RtmpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let s = s.trim();
        let (tls, rest) = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rtmp") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rtmps") => (true, rest),
            // Show at most the scheme: what follows may well be a key.
            Some((scheme, _)) => return Err(UrlError::Scheme(format!("{scheme}://..."))),
            None => return Err(UrlError::Scheme("no scheme".into())),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let shown = |what: &str| {
            format!(
                "{}://{authority}/{what}",
                if tls { "rtmps" } else { "rtmp" }
            )
        };
        if authority.contains('@') {
            // The part before '@' is a secret too.
            let host = authority.rsplit('@').next().unwrap_or_default();
            return Err(UrlError::Credentials(format!(
                "{}://{KEY_MASK}@{host}/...",
                if tls { "rtmps" } else { "rtmp" }
            )));
        }
        let bad_host = || UrlError::Host(shown("..."));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad_host)?;
            match after {
                "" => (h, None),
                _ => (h, Some(after.strip_prefix(':').ok_or_else(bad_host)?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        // An IPv6 address only in brackets, nothing but ":PORT" after them (RFC 3986 3.2.2).
        if host.is_empty()
            || host.contains(['[', ']'])
            || (host.contains(':') && !authority.starts_with('['))
        {
            return Err(bad_host());
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    1935
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| UrlError::Port(shown("..."), p.into()))?,
        };
        let path = path.trim_end_matches('/');
        let (app, key) = path
            .rsplit_once('/')
            .ok_or_else(|| UrlError::Path(shown(KEY_MASK)))?;
        let app = app.trim_matches('/');
        if app.is_empty() || key.is_empty() {
            return Err(UrlError::Path(shown(KEY_MASK)));
        }
        Ok(RtmpUrl {
            raw: s.to_string(),
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtmpUrl({})", self.masked())
    }
}

/// One `--rtmp URL` / `[[rtmp]]` entry.
///
/// In the config file either a table (`[[rtmp]]` then `url = "rtmp://..."`) or a plain string in
/// an array (`rtmp = ["rtmp://..."]`). It serialises as the table, stream key included (the
/// config merge round-trips through TOML); `Debug` masks the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    pub url: RtmpUrl,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .finish()
    }
}

impl FromStr for Destination {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Ok(Destination { url: s.parse()? })
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Table<'a> {
            url: &'a str,
        }
        Table {
            url: self.url.expose(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Destination;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an rtmp:// or rtmps:// URL, or a table with `url`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Destination, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Destination, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                t.url.parse().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// clap value parser for `--rtmp`: its errors never echo the URL (clap's default message
/// quotes the value, stream key included).
#[derive(Clone, Copy, Debug, Default)]
pub struct DestinationParser;

impl clap::builder::TypedValueParser for DestinationParser {
    type Value = Destination;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Destination, clap::Error> {
        let s = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "--rtmp: URL is not UTF-8\n",
            )
        })?;
        s.parse::<Destination>().map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--rtmp: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Replaces the stream key of every `rtmp://`/`rtmps://` URL in `text` (e.g. a config file
/// parse error quoting the offending line) with [`url::KEY_MASK`].
pub fn mask_urls(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(at) = lower[i..].find("rtmp").map(|p| p + i) {
        let scheme_end = if lower[at..].starts_with("rtmps://") {
            at + 8
        } else if lower[at..].starts_with("rtmp://") {
            at + 7
        } else {
            out.push_str(&text[i..at + 4]);
            i = at + 4;
            continue;
        };
        let end = text[scheme_end..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ']' | '}' | '>')
            })
            .map_or(text.len(), |p| p + scheme_end);
        let url = &text[at..end];
        out.push_str(&text[i..at]);
        match url.parse::<RtmpUrl>() {
            Ok(u) => out.push_str(&u.masked()),
            // Unparsable: keep the scheme and host at most.
            Err(_) => {
                let host_end = url[scheme_end - at..]
                    .find('/')
                    .map_or(url.len(), |p| p + scheme_end - at);
                out.push_str(&url[..host_end]);
                if host_end < url.len() {
                    out.push_str("/***");
                }
            }
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

#[cfg(test)]
mod tests;
