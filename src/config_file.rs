//! Config file errors that never echo a value from the file: they name the line, the column and
//! the key (`rtmp[0].url`), plus the parser's message with every quoted value replaced by `***`.
//!
//! toml's own `Display` quotes the offending line and serde's messages quote the value
//! (`invalid type: string "rtmp://…/KEY"`); a config file holds stream keys, passwords and the
//! access secret, so neither is shown. Keys are looked up in toml's spanned document
//! ([`toml::de::DeTable`]); after a syntax error (no document) the bare key at the start of the
//! error's line is named, if there is one.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// `line L, column C, key `K`: MESSAGE` for an error in `text`.
pub fn describe(text: &str, err: &toml::de::Error) -> String {
    let msg = scrub(err.message());
    let Some(span) = err.span() else {
        return msg;
    };
    let pos = span.start.min(text.len());
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..pos].matches('\n').count() + 1;
    let column = text[line_start..pos].chars().count() + 1;
    let key = match DeTable::parse(text) {
        Ok(doc) => {
            let mut path = String::new();
            walk_table(doc.get_ref(), pos, &mut path);
            Some(path).filter(|p| !p.is_empty())
        }
        Err(_) => None,
    }
    .or_else(|| line_key(&text[line_start..]));
    match key {
        Some(k) => format!("line {line}, column {column}, key `{}`: {msg}", crate::secret::mask(&k)),
        None => format!("line {line}, column {column}: {msg}"),
    }
}

/// A message with quoted values (`"…"`, `'…'`) replaced by `***` and any secret masked; one line.
pub fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        if c == '`' {
            // serde's backticks hold keys, type names and numbers: kept.
            out.push(c);
            for d in chars.by_ref() {
                out.push(d);
                if d == '`' {
                    break;
                }
            }
        } else if c == '"' || c == '\'' {
            let mut escaped = false;
            for d in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
            out.push(c);
            out.push_str(crate::secret::MASK);
            out.push(c);
        } else if c == '\n' {
            out.push_str("; ");
        } else {
            out.push(c);
        }
    }
    crate::secret::mask(out.trim_end_matches("; "))
}

fn walk_table(t: &DeTable<'_>, pos: usize, path: &mut String) -> bool {
    for (k, v) in t.iter() {
        let key_hit = k.span().contains(&pos);
        if key_hit || v.span().contains(&pos) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k.get_ref());
            if !key_hit {
                walk_value(v, pos, path);
            }
            return true;
        }
    }
    // Array-of-tables and dotted tables span only their headers: look inside them too.
    for (k, v) in t.iter() {
        let mut sub = String::new();
        if walk_value(v, pos, &mut sub) && !sub.is_empty() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k.get_ref());
            path.push_str(&sub);
            return true;
        }
    }
    false
}

/// Appends `[i]` / `.key` for where `pos` lies inside `v`; true if it lies inside.
fn walk_value(v: &Spanned<DeValue<'_>>, pos: usize, path: &mut String) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => {
            let mut sub = String::new();
            if walk_table(t, pos, &mut sub) {
                path.push('.');
                path.push_str(&sub);
                return true;
            }
            v.span().contains(&pos)
        }
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let mut sub = format!("[{i}]");
                if walk_value(e, pos, &mut sub) || e.span().contains(&pos) {
                    path.push_str(&sub);
                    return true;
                }
            }
            v.span().contains(&pos)
        }
        _ => v.span().contains(&pos),
    }
}

/// The bare key a line starts with (`name = …` or a `[table]` header), if any.
fn line_key(line: &str) -> Option<String> {
    let line = line.lines().next().unwrap_or("").trim_start();
    let bare = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if let Some(h) = line.strip_prefix('[') {
        let name = h.trim_start_matches('[').split(']').next().unwrap_or("").trim();
        return bare(name).then(|| name.to_string());
    }
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    bare(k).then(|| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn file_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(&p, text).unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains(p.to_str().unwrap()), "names the file: {e}");
        assert!(!e.contains("SECRET"), "echoes a value: {e}");
        e
    }

    #[test]
    fn errors_name_line_column_and_key_never_the_value() {
        // A string where the config expects a table (the RTMP stream key case).
        let e = file_error("window = 8\nrtmp = \"rtmp://a.rtmp.youtube.com/live2/SECRET-KEY\"\n");
        assert!(e.contains("line 2, column 8, key `rtmp`") && e.contains("invalid type: string"), "{e}");
        // A table where a string is expected.
        let e = file_error("[source]\ncmd = \"exec:ffmpeg -password SECRET\"\n");
        assert!(e.contains("key `source`") && e.contains("invalid type"), "{e}");
        // An array of the wrong type, and a bad entry of a table array.
        let e = file_error("rtmp = [\n  \"rtmp://h/live/SECRET1\",\n  42,\n]\n");
        assert!(e.contains("line 3, column 3, key `rtmp[1]`") && e.contains("integer"), "{e}");
        let e = file_error("[[rtmp]]\nurl = \"rtmp://h/live/k\"\n[[rtmp]]\nurl = \"rtmp://h/SECRET\"\n");
        // (a table's own check points at its header)
        assert!(e.contains("line 3, column 1, key `rtmp[1]`") && e.contains("APP/STREAM-KEY"), "{e}");
        let e = file_error("[[output]]\nurl = \"s3://bucket/x\"\nsecret-access-key = 7\n");
        assert!(e.contains("line 1") || e.contains("line 3"), "{e}");
        assert!(e.contains("output"), "{e}");
        // A syntax error on a line holding a key and a secret.
        let e = file_error("window = 8\nbasic-auth = \"user:SECRET\n");
        assert!(e.contains("line 2") && e.contains("key `basic-auth`"), "{e}");
        let e = file_error("source = 'exec:x --key SECRET' extra\n");
        assert!(e.contains("line 1"), "{e}");
        // Unknown keys: the line that holds them, as the README says.
        let e = file_error("window = 8\nsegment_duraton = 2.0\n");
        assert!(e.contains("line 2, column 1, key `segment_duraton`") && e.contains("unknown field"), "{e}");
        // A number is no secret but a wrong one is still pinned down.
        let e = file_error("window = \"SECRET\"\n");
        assert!(e.contains("key `window`"), "{e}");
    }

    #[test]
    fn scrub_removes_quoted_values() {
        assert_eq!(scrub("invalid type: string \"a\\\"b\", expected x"), "invalid type: string \"***\", expected x");
        assert_eq!(scrub("unknown output 'dir'\nmore"), "unknown output '***'; more");
        assert_eq!(scrub("unknown field `x`"), "unknown field `x`");
        assert_eq!(scrub("invalid basic string, expected `\"`"), "invalid basic string, expected `\"`");
    }
}
