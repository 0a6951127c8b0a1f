//! Configuration of one output: `--output dir:PATH` / `--output s3://BUCKET/PREFIX` on the
//! command line, or an `[[output]]` table in the config file (a plain string is accepted there
//! too). Credentials come from the standard `AWS_*` variables unless the table sets them; they
//! are never printed (`Debug` masks them).

use super::store::S3Settings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Uploads in flight per output (default).
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Segments waiting for the store before the oldest are dropped (default): ~30 s of video at the
/// default 1 s segments, so a short outage loses nothing; memory stays bounded by about this many
/// segments (e.g. 15 MB at 4 Mbit/s).
pub const DEFAULT_QUEUE: usize = 30;

/// What an output keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retention {
    /// A sliding live window like the origin's; segments that left it are deleted after a grace
    /// period.
    #[default]
    Window,
    /// Everything, as a recording: an EVENT playlist that gets EXT-X-ENDLIST at the end.
    All,
}

/// A secret that `Debug` does not show.
pub use crate::secret::Secret;

/// One `[[output]]`. Exactly one of `url`, `dir`, `bucket` says where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputSpec {
    /// `dir:PATH` or `s3://BUCKET/PREFIX`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A local directory (same as `url = "dir:PATH"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// An S3 bucket (same as `url = "s3://BUCKET"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix under the URL's path, e.g. `cams/birdbox` (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// S3 endpoint for non-AWS stores (default: `--s3-endpoint`, `AWS_ENDPOINT_URL`, else AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, else us-east-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style S3 requests (default: on with a custom endpoint, off for AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Default: `AWS_ACCESS_KEY_ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Default: `AWS_SESSION_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// `window` (default) or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Uploads in flight (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Segments waiting before the oldest are dropped (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    /// Also publish LL-HLS parts (default off; see README for the trade-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<bool>,
    /// Directory outputs: fsync each file before renaming it into place (default on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<bool>,
}

impl FromStr for OutputSpec {
    type Err = String;
    /// The command-line form: `dir:PATH` or `s3://BUCKET[/PREFIX]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = OutputSpec {
            url: Some(s.to_string()),
            ..Default::default()
        };
        spec.target()?;
        Ok(spec)
    }
}

/// `[[output]]` entries may be tables or plain strings.
impl<'de> Deserialize<'de> for OutputSpecEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => s
                .parse()
                .map(OutputSpecEntry)
                .map_err(serde::de::Error::custom),
            other => other
                .try_into::<OutputSpec>()
                .map(OutputSpecEntry)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Wrapper giving [`OutputSpec`] its string-or-table TOML form (used by `Config::output`).
/// Its `Debug` also masks URL passwords in `url`/`endpoint` (credentials print as `***` anyway).
#[derive(Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OutputSpecEntry(pub OutputSpec);

impl std::fmt::Debug for OutputSpecEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::secret::mask(&format!("{:?}", self.0)))
    }
}

impl FromStr for OutputSpecEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(OutputSpecEntry)
    }
}

/// Where an output writes, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Dir { path: PathBuf, prefix: String },
    S3 { bucket: String, prefix: String },
}

/// Joins path pieces into a key prefix: no leading slash, one trailing slash (or empty).
fn join_prefix(parts: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    for p in parts {
        for c in p.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." || c.starts_with('.') {
                return Err(format!("prefix component '{c}' is not allowed"));
            }
            out.push_str(c);
            out.push('/');
        }
    }
    Ok(out)
}

impl OutputSpec {
    /// Resolves and checks where this output writes.
    pub fn target(&self) -> Result<Target, String> {
        let extra = self.prefix.as_deref().unwrap_or("");
        let given = [
            self.url.is_some(),
            self.dir.is_some(),
            self.bucket.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(
                "give exactly one of url (dir:PATH or s3://BUCKET/PREFIX), dir, bucket".into(),
            );
        }
        if let Some(dir) = &self.dir {
            return Ok(Target::Dir {
                path: dir.clone(),
                prefix: join_prefix(&[extra])?,
            });
        }
        if let Some(bucket) = &self.bucket {
            check_bucket(bucket)?;
            return Ok(Target::S3 {
                bucket: bucket.clone(),
                prefix: join_prefix(&[extra])?,
            });
        }
        let url = self.url.as_deref().unwrap_or_default();
        if let Some(path) = url.strip_prefix("dir:") {
            if path.is_empty() {
                return Err(format!("'{url}': dir: needs a path"));
            }
            return Ok(Target::Dir {
                path: PathBuf::from(path),
                prefix: join_prefix(&[extra])?,
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket)?;
            return Ok(Target::S3 {
                bucket: bucket.to_string(),
                prefix: join_prefix(&[path, extra])?,
            });
        }
        Err(format!(
            "unknown output '{url}': use dir:PATH or s3://BUCKET/PREFIX"
        ))
    }

    /// Checks everything (called by `Config::validate`).
    pub fn validate(&self) -> Result<(), String> {
        self.target()?;
        if self.concurrency == Some(0) || self.concurrency.is_some_and(|c| c > 64) {
            return Err("concurrency must be within 1..64".into());
        }
        if self.queue == Some(0) {
            return Err("queue must be at least 1 segment".into());
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!(
                    "endpoint '{e}' must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }

    pub fn retention(&self) -> Retention {
        self.retention.unwrap_or_default()
    }
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }
    pub fn queue(&self) -> usize {
        self.queue.unwrap_or(DEFAULT_QUEUE)
    }

    /// S3 client settings; `default_endpoint` is `--s3-endpoint`.
    pub fn s3_settings(&self, bucket: &str, default_endpoint: Option<&str>) -> S3Settings {
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| default_endpoint.map(str::to_string));
        S3Settings {
            bucket: bucket.to_string(),
            path_style: self.path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.as_ref().map(|s| s.0.clone()),
            session_token: self.session_token.as_ref().map(|s| s.0.clone()),
            timeout: Duration::from_secs(20),
        }
    }

    /// A short name for logs and metric labels (no credentials, no endpoint).
    pub fn label(&self) -> String {
        match self.target() {
            Ok(Target::Dir { path, prefix }) => format!("dir:{}", path.join(prefix).display()),
            Ok(Target::S3 { bucket, prefix }) => format!("s3://{bucket}/{prefix}"),
            Err(_) => "invalid".into(),
        }
    }
}

fn check_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'_'
        });
    if ok {
        Ok(())
    } else {
        Err(format!("'{b}' is not a valid bucket name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_and_flags() {
        use crate::config::Config;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(
            &p,
            "s3-endpoint = \"http://127.0.0.1:9000\"\n[[output]]\nurl = \"s3://bk1/cams/x\"\nqueue = 5\n\
             secret-access-key = \"hunter2\"\n[[output]]\ndir = \"/srv/hls\"\nretention = \"all\"\n",
        )
        .unwrap();
        let c = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(c.output.len(), 2);
        assert_eq!(c.output[0].0.queue(), 5);
        assert_eq!(c.output[1].0.retention(), Retention::All);
        assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "Debug of the config shows a secret"
        );
        // Flags replace the file's list (command line beats the file).
        let c = Config::load_from([
            "hlsd",
            "--config",
            p.to_str().unwrap(),
            "--output",
            "dir:/tmp/x",
        ])
        .unwrap();
        assert_eq!(c.output.len(), 1);
        assert_eq!(
            c.output[0].0.target().unwrap(),
            Target::Dir {
                path: "/tmp/x".into(),
                prefix: "".into()
            }
        );
        std::fs::write(&p, "[[output]]\nurl = \"ftp://x\"\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown output"), "{e}");
        // (an invalid --output is refused by clap with the same message, exiting with status 2)
    }

    #[test]
    fn parses_command_line_and_table_forms() {
        let s: OutputSpec = "s3://bucket/cams/birdbox/".parse().unwrap();
        assert_eq!(
            s.target().unwrap(),
            Target::S3 {
                bucket: "bucket".into(),
                prefix: "cams/birdbox/".into()
            }
        );
        let s: OutputSpec = "s3://bucket".parse().unwrap();
        assert_eq!(
            s.target().unwrap(),
            Target::S3 {
                bucket: "bucket".into(),
                prefix: "".into()
            }
        );
        let s: OutputSpec = "dir:/srv/hls".parse().unwrap();
        assert_eq!(
            s.target().unwrap(),
            Target::Dir {
                path: "/srv/hls".into(),
                prefix: "".into()
            }
        );
        assert!("ftp://x".parse::<OutputSpec>().is_err());
        assert!("s3://Bad_Bucket!/x".parse::<OutputSpec>().is_err());
        assert!("s3://bucket/../x".parse::<OutputSpec>().is_err());
        assert!("dir:".parse::<OutputSpec>().is_err());

        #[derive(Deserialize)]
        struct F {
            output: Vec<OutputSpecEntry>,
        }
        let f: F = toml::from_str("output = [\"dir:/a\"]\n").unwrap();
        assert_eq!(
            f.output[0].0.target().unwrap(),
            Target::Dir {
                path: "/a".into(),
                prefix: "".into()
            }
        );
        let f: F = toml::from_str(
            "[[output]]\nbucket = \"media\"\nprefix = \"cams/birdbox\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             retention = \"all\"\nparts = true\nsecret-access-key = \"hunter2\"\n",
        )
        .unwrap();
        let o = &f.output[0].0;
        assert_eq!(
            o.target().unwrap(),
            Target::S3 {
                bucket: "media".into(),
                prefix: "cams/birdbox/".into()
            }
        );
        assert_eq!(o.retention(), Retention::All);
        let st = o.s3_settings("media", None);
        assert!(st.path_style, "custom endpoint defaults to path style");
        assert!(
            !format!("{o:?}").contains("hunter2"),
            "Debug shows the secret"
        );
        assert!(
            !format!("{st:?}").contains("hunter2"),
            "Debug shows the secret"
        );
        let e = toml::from_str::<F>("[[output]]\nurl = \"dir:/a\"\nqueu = 3\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("queu"), "{e}");
    }
}
