//! Secrets: one masking mechanism for every text hlsd prints that may hold one (an `exec:` command
//! line, an encoder's stderr line, a config value in an error), and the two string types whose
//! `Debug`/`Display` never show a secret.
//!
//! [`mask`] replaces, with [`MASK`]:
//! - the password of URL userinfo (`rtsp://admin:PASS@cam/`; userinfo without a password whole),
//! - RTMP stream keys (the last path component of `rtmp[s]://`, see [`crate::sink::rtmp::mask_urls`]),
//! - the value of `NAME=VALUE` pairs (query parameters, `--flag=VALUE`, `key=value` arguments) and
//!   of `-flag VALUE` options whose name looks secret ([`secret_name`]: key, token, sig, password,
//!   passphrase, secret, auth, credential, streamid, ...),
//! - the credentials of `Authorization: SCHEME VALUE` headers.
//!
//! It errs on the side of masking (a harmless `-pass 1` becomes `-pass ***`): over-masking costs a
//! log line's detail, under-masking a leaked key.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What replaces a secret in everything printed.
pub const MASK: &str = "***";

/// Name words that mark a value as secret (whole `_`/`-`/`.`-separated words, or word endings).
const SECRET_WORDS: &[&str] = &[
    "key", "token", "sig", "signature", "password", "passwd", "pass", "pwd", "secret", "auth",
    "authorization", "credential", "credentials", "passphrase", "streamid", "session", "cookie",
    "apikey", "hmac", "jwt", "bearer", "cred",
];

/// Whether a parameter or flag name (leading dashes allowed) looks like it holds a secret:
/// one of its words is, or ends with, a [`SECRET_WORDS`] entry (`X-Amz-Signature`, `api_key`,
/// `streamkey`, `--access-secret`), but `keyint` or `design` are not.
pub fn secret_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    name.split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .any(|w| SECRET_WORDS.iter().any(|s| w == *s || (w.len() > s.len() && w.ends_with(s) && s.len() >= 3)))
}

/// `text` with every secret replaced by [`MASK`] (see the module docs for what counts).
pub fn mask(text: &str) -> String {
    let t = mask_userinfo(text);
    let t = crate::sink::rtmp::mask_urls(&t);
    let t = mask_pairs(&t);
    mask_authorization(&t)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Where an unquoted value ends: whitespace, a quote, a pair separator or a closing bracket.
fn value_end(s: &str) -> usize {
    s.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '&' | '<' | '>' | '}' | ']' | ')'))
        .unwrap_or(s.len())
}

/// `scheme://user:password@host` → `scheme://user:***@host`; `scheme://token@host` → `scheme://***@host`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let auth_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let authority = &after[..auth_end];
        match authority.rfind('@') {
            Some(a) => {
                let userinfo = &authority[..a];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[a..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[auth_end..];
    }
    out.push_str(rest);
    out
}

/// `NAME=VALUE` and `-NAME VALUE` with a secret-looking NAME: the value becomes [`MASK`].
fn mask_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        let boundary = prev.is_none_or(|p| !is_name_char(p) && p != '\\');
        if boundary && is_name_char(c) {
            let len = text[i..].find(|c: char| !is_name_char(c)).unwrap_or(text.len() - i);
            let name = &text[i..i + len];
            out.push_str(name);
            i += len;
            prev = name.chars().last();
            if !secret_name(name) {
                continue;
            }
            let after = &text[i..];
            if let Some(v) = after.strip_prefix('=') {
                out.push('=');
                i += 1;
                let skip = skip_value(v);
                if skip > 0 {
                    out.push_str(MASK);
                }
                i += skip;
                prev = Some('*');
            } else if name.starts_with('-') && after.starts_with([' ', '\t']) {
                let ws = after.len() - after.trim_start_matches([' ', '\t']).len();
                let v = &after[ws..];
                if v.is_empty() || v.starts_with('-') {
                    continue;
                }
                out.push_str(&after[..ws]);
                out.push_str(MASK);
                i += ws + skip_value(v);
                prev = Some('*');
            }
            continue;
        }
        out.push(c);
        i += c.len_utf8();
        prev = Some(c);
    }
    out
}

/// Length of a value: a quoted string (quotes included), else up to [`value_end`].
fn skip_value(v: &str) -> usize {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner.find(q).map_or(v.len(), |e| e + 2);
        }
    }
    value_end(v)
}

/// `Authorization: Basic dXNlcjpwdw==` → `Authorization: Basic ***`.
fn mask_authorization(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(at) = lower[i..].find("authorization:").map(|p| p + i) {
        let start = at + "authorization:".len();
        out.push_str(&text[i..start]);
        let rest = &text[start..];
        let ws = rest.len() - rest.trim_start().len();
        let after_ws = &rest[ws..];
        let word = value_end(after_ws);
        let after_word = &after_ws[word..];
        let ws2 = after_word.len() - after_word.trim_start_matches(' ').len();
        out.push_str(&rest[..ws]);
        let cred_start = if ws2 > 0 && !after_word[ws2..].is_empty() {
            out.push_str(&after_ws[..word + ws2]);
            ws + word + ws2
        } else {
            ws
        };
        let cred = value_end(&rest[cred_start..]);
        if cred > 0 {
            out.push_str(MASK);
        }
        i = start + cred_start + cred;
    }
    out.push_str(&text[i..]);
    out
}

/// A secret (password, HMAC key, S3 secret key): `Debug` and `Display` print [`MASK`] only;
/// [`Secret::expose`] is for the code that uses it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{MASK}\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Text that may contain secrets (an `exec:` command line, a URL): `Debug` and `Display` show it
/// through [`mask`]; it derefs to the real text for the code that uses it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Masked(pub String);

impl std::ops::Deref for Masked {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&mask(&self.0), f)
    }
}

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.0))
    }
}

impl FromStr for Masked {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Masked(s.to_string()))
    }
}

impl From<&str> for Masked {
    fn from(s: &str) -> Self {
        Masked(s.to_string())
    }
}

impl PartialEq<&str> for Masked {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
