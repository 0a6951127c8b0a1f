//! Where published objects go: a small [`Store`] trait (put, head, delete, get, list) with three
//! implementations — [`MemoryStore`] (tests, and the pure publisher logic), [`DiskStore`] (a
//! directory for nginx/Caddy; atomic writes by rename) and [`S3Store`] (any S3-compatible object
//! store through `object_store`). [`conformance`] is the one test suite every implementation
//! passes (run on memory and disk by the unit tests, on a real S3 server by tests/storage.rs).
//!
//! Keys are `/`-separated relative names (`cams/birdbox/stream.m3u8`); each store maps them onto
//! its namespace. A put replaces the whole object atomically: readers see the old or the new
//! bytes, never a mix (S3 PUT semantics; rename(2) on disk), so a retried put never corrupts
//! what is already there. Deleting a missing object succeeds.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Errors of a store operation; each names the object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: {msg}")]
    Io { key: String, msg: String },
    #[error("{key}: invalid object key")]
    BadKey { key: String },
}

/// HTTP metadata of an object (S3 stores it; a static file server derives it from the name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub content_type: &'static str,
    pub cache_control: String,
}

/// A body given as the chunks it already is in memory (a segment's parts), never copied.
pub type Body = Vec<Bytes>;

/// A place objects are published to.
pub trait Store: Send + Sync + 'static {
    /// Creates or atomically replaces `key`.
    fn put(
        &self,
        key: &str,
        body: Body,
        meta: &Meta,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether `key` exists.
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes `key`; a missing object is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads `key` back (`None` if missing) — tests and tools.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;
    /// Keys under `prefix`, sorted — tests and tools.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Where `key` lives, for logs (`s3://bucket/key`, `/srv/hls/key`).
    fn locate(&self, key: &str) -> String;
}

fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with('.'));
    if bad {
        return Err(StoreError::BadKey { key: key.into() });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Objects in a map; `fail` and `wipe` simulate an outage and a store that lost its data.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Default)]
struct MemInner {
    objects: BTreeMap<String, (Bytes, Meta)>,
    failing: bool,
    /// Called on every successful put/delete with the map after the change (test invariants).
    observer: Option<Arc<Observer>>,
}

/// A test hook called with the operation and the objects after it.
pub type Observer = dyn Fn(&str, &str, &BTreeMap<String, (Bytes, Meta)>) + Send + Sync;

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("objects", &self.inner.lock().unwrap().objects.len())
            .finish()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// While set, every operation fails like an unreachable server.
    pub fn set_failing(&self, failing: bool) {
        self.inner.lock().unwrap().failing = failing;
    }
    /// Forgets every object (a server restarted without persistence).
    pub fn wipe(&self) {
        self.inner.lock().unwrap().objects.clear();
    }
    /// Installs a hook run after each successful put ("put") and delete ("delete").
    pub fn observe(&self, f: Arc<Observer>) {
        self.inner.lock().unwrap().observer = Some(f);
    }
    /// A copy of an object with its metadata.
    pub fn object(&self, key: &str) -> Option<(Bytes, Meta)> {
        self.inner.lock().unwrap().objects.get(key).cloned()
    }
    pub fn keys(&self) -> Vec<String> {
        self.inner.lock().unwrap().objects.keys().cloned().collect()
    }
    fn op<T>(&self, key: &str, f: impl FnOnce(&mut MemInner) -> T) -> Result<T, StoreError> {
        check_key(key)?;
        let mut g = self.inner.lock().unwrap();
        if g.failing {
            return Err(StoreError::Io {
                key: key.into(),
                msg: "connection refused (simulated outage)".into(),
            });
        }
        Ok(f(&mut g))
    }
}

impl Store for MemoryStore {
    async fn put(&self, key: &str, body: Body, meta: &Meta) -> Result<(), StoreError> {
        let data: Bytes = if body.len() == 1 {
            body[0].clone()
        } else {
            body.concat().into()
        };
        self.op(key, |g| {
            g.objects.insert(key.to_string(), (data, meta.clone()));
            if let Some(o) = g.observer.clone() {
                o("put", key, &g.objects);
            }
        })
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.op(key, |g| g.objects.contains_key(key))
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.op(key, |g| {
            g.objects.remove(key);
            if let Some(o) = g.observer.clone() {
                o("delete", key, &g.objects);
            }
        })
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.op(key, |g| g.objects.get(key).map(|o| o.0.clone()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let g = self.inner.lock().unwrap();
        Ok(g.objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn locate(&self, key: &str) -> String {
        format!("memory:{key}")
    }
}

// ---------------------------------------------------------------------------------------------

/// Suffix of in-progress files. They start with a dot, so no static server lists them and no
/// key can name one; leftovers of a crash are removed by [`DiskStore::remove_temporaries`].
const TMP_SUFFIX: &str = ".hlsd-tmp";

/// A directory. Every put writes `.NAME.N.hlsd-tmp` in the object's directory, optionally
/// fsyncs it, then renames it over `NAME`: a crash (even SIGKILL or power loss with `fsync`)
/// never leaves a partial file under a final name.
#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
    fsync: bool,
    counter: Arc<AtomicU64>,
}

impl DiskStore {
    /// `fsync`: flush file data to the device before the rename (costs SD-card wear and latency;
    /// without it a power cut may leave an empty file under a final name, a crash still cannot).
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> Self {
        DiskStore {
            root: root.into(),
            fsync,
            counter: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Removes in-progress files left by a crash under `prefix` (call before publishing).
    pub fn remove_temporaries(&self, prefix: &str) -> std::io::Result<usize> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut n = 0;
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn write_atomic(&self, path: &Path, body: &[Bytes]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}-{n}{TMP_SUFFIX}", std::process::id()));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            for b in body {
                f.write_all(b)?;
            }
            if self.fsync {
                f.sync_data()?;
            }
            drop(f);
            std::fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}

fn io_err(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        key: key.into(),
        // object_store quotes the request URL, which may carry endpoint credentials.
        msg: crate::secret::mask(&e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| io_err(key, e)),
        Err(e) => Err(io_err(key, e)),
    }
}

impl Store for DiskStore {
    async fn put(&self, key: &str, body: Body, _meta: &Meta) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let me = self.clone();
        blocking(key, move || me.write_atomic(&path, &body)).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        blocking(key, move || match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        blocking(key, move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        blocking(key, move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(&prefix.clone(), move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for e in rd.flatten() {
                    let p = e.path();
                    if e.file_type()?.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&root) {
                        let k = rel.to_string_lossy().replace('\\', "/");
                        if k.starts_with(&prefix) && check_key(&k).is_ok() {
                            out.push(k);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }
    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------------

/// Settings of an S3-compatible store. `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000` for MinIO/Garage/moto; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Per-request timeout (the publisher retries on its own schedule).
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint.as_deref().map(crate::secret::mask))
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An S3-compatible bucket through `object_store` (its own retries are off: the publisher
/// retries with backoff and jitter, and drops what it cannot keep up with).
#[derive(Debug, Clone)]
pub struct S3Store {
    s3: Arc<object_store::aws::AmazonS3>,
    bucket: String,
}

impl S3Store {
    /// Builds the client: standard `AWS_*` variables first, then `settings` on top.
    pub fn new(settings: &S3Settings) -> Result<S3Store, StoreError> {
        use object_store::aws::AmazonS3Builder;
        // rustls for object_store's reqwest uses the process-wide provider: ring, as for HTTPS.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&settings.bucket);
        if let Some(e) = &settings.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        b = b.with_virtual_hosted_style_request(!settings.path_style);
        if let Some(r) = &settings.region {
            b = b.with_region(r);
        }
        if let Some(k) = &settings.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &settings.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        if let Some(k) = &settings.session_token {
            b = b.with_token(k);
        }
        let timeout = if settings.timeout.is_zero() {
            std::time::Duration::from_secs(20)
        } else {
            settings.timeout
        };
        let client = object_store::ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_allow_http(
                settings
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let retry = object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        };
        let s3 = b
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| io_err(&format!("s3://{}", settings.bucket), e))?;
        Ok(S3Store {
            s3: Arc::new(s3),
            bucket: settings.bucket.clone(),
        })
    }
}

fn s3_path(key: &str) -> Result<object_store::path::Path, StoreError> {
    check_key(key)?;
    object_store::path::Path::parse(key).map_err(|_| StoreError::BadKey { key: key.into() })
}

impl Store for S3Store {
    async fn put(&self, key: &str, body: Body, meta: &Meta) -> Result<(), StoreError> {
        use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
        let path = s3_path(key)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, meta.content_type.into());
        attributes.insert(Attribute::CacheControl, meta.cache_control.clone().into());
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        let payload: PutPayload = body.into_iter().collect();
        self.s3
            .put_opts(&path, payload, opts)
            .await
            .map(|_| ())
            .map_err(|e| io_err(key, e))
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        use object_store::ObjectStoreExt;
        match self.s3.head(&s3_path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_err(key, e)),
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        use object_store::ObjectStoreExt;
        match self.s3.delete(&s3_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(key, e)),
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        use object_store::ObjectStoreExt;
        match self.s3.get(&s3_path(key)?).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| io_err(key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err(key, e)),
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures_util_compat::collect_keys;
        let p = prefix.trim_end_matches('/');
        let pp = if p.is_empty() {
            None
        } else {
            Some(object_store::path::Path::from(p))
        };
        let mut keys = collect_keys(self.s3.as_ref(), pp.as_ref())
            .await
            .map_err(|e| io_err(prefix, e))?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }
    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// Listing without a direct `futures` dependency: `list_with_delimiter` per directory level.
mod futures_util_compat {
    use object_store::path::Path;
    use object_store::ObjectStore;

    pub async fn collect_keys(
        s: &dyn ObjectStore,
        prefix: Option<&Path>,
    ) -> object_store::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut dirs = vec![prefix.cloned()];
        while let Some(d) = dirs.pop() {
            let r = s.list_with_delimiter(d.as_ref()).await?;
            out.extend(r.objects.into_iter().map(|o| o.location.to_string()));
            dirs.extend(r.common_prefixes.into_iter().map(Some));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

/// The behaviour every store must have; panics with the store's name on the first deviation.
#[doc(hidden)]
pub mod conformance {
    use super::*;

    fn meta(ct: &'static str) -> Meta {
        Meta {
            content_type: ct,
            cache_control: "public, max-age=1".into(),
        }
    }

    /// Runs the suite under `prefix` (which must be empty).
    pub async fn run(store: &impl Store, prefix: &str) {
        let k = |n: &str| format!("{prefix}{n}");
        assert_eq!(
            store.list(prefix).await.unwrap(),
            Vec::<String>::new(),
            "prefix {prefix} must start empty"
        );
        assert!(!store.exists(&k("a.m4s")).await.unwrap());
        assert_eq!(store.get(&k("a.m4s")).await.unwrap(), None);

        // Put from several chunks reads back as their concatenation.
        let body = vec![
            Bytes::from_static(b"moof"),
            Bytes::from_static(b"mdat-data"),
        ];
        store
            .put(&k("a.m4s"), body, &meta("video/iso.segment"))
            .await
            .unwrap();
        assert!(store.exists(&k("a.m4s")).await.unwrap());
        assert_eq!(
            store.get(&k("a.m4s")).await.unwrap().unwrap(),
            Bytes::from_static(b"moofmdat-data")
        );

        // Replacing an object replaces it whole (a shorter body leaves no tail behind).
        store
            .put(
                &k("p.m3u8"),
                vec![Bytes::from_static(b"#EXTM3U\nlong version\n")],
                &meta("application/vnd.apple.mpegurl"),
            )
            .await
            .unwrap();
        store
            .put(
                &k("p.m3u8"),
                vec![Bytes::from_static(b"#EXTM3U\n")],
                &meta("application/vnd.apple.mpegurl"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get(&k("p.m3u8")).await.unwrap().unwrap(),
            Bytes::from_static(b"#EXTM3U\n")
        );

        // Empty objects and nested keys.
        store
            .put(&k("sub/dir/e.mp4"), vec![], &meta("video/mp4"))
            .await
            .unwrap();
        assert_eq!(
            store.get(&k("sub/dir/e.mp4")).await.unwrap().unwrap().len(),
            0
        );

        // Concurrent puts of distinct objects.
        let bodies: Vec<_> = (0..8)
            .map(|i| Bytes::from(vec![i as u8; 10_000 + i]))
            .collect();
        let puts = bodies.iter().enumerate().map(|(i, b)| {
            let key = k(&format!("c{i}.m4s"));
            let b = b.clone();
            async move { store.put(&key, vec![b], &meta("video/iso.segment")).await }
        });
        for r in join_all(puts).await {
            r.unwrap();
        }
        for (i, b) in bodies.iter().enumerate() {
            assert_eq!(
                &store.get(&k(&format!("c{i}.m4s"))).await.unwrap().unwrap(),
                b
            );
        }

        let mut want: Vec<String> = ["a.m4s", "p.m3u8", "sub/dir/e.mp4"]
            .iter()
            .map(|n| k(n))
            .collect();
        want.extend((0..8).map(|i| k(&format!("c{i}.m4s"))));
        want.sort();
        assert_eq!(store.list(prefix).await.unwrap(), want);

        // Delete is idempotent.
        store.delete(&k("a.m4s")).await.unwrap();
        store.delete(&k("a.m4s")).await.unwrap();
        assert!(!store.exists(&k("a.m4s")).await.unwrap());
        assert_eq!(store.get(&k("a.m4s")).await.unwrap(), None);

        // Keys that could escape the namespace or name a temporary file are refused.
        for bad in ["", "/abs", "../x", "a/../b", "a//b", ".hidden", "dir/"] {
            let r = store.put(bad, vec![], &meta("video/mp4")).await;
            assert!(
                matches!(r, Err(StoreError::BadKey { .. })),
                "key {bad:?} accepted"
            );
        }

        for key in store.list(prefix).await.unwrap() {
            store.delete(&key).await.unwrap();
        }
        assert_eq!(store.list(prefix).await.unwrap(), Vec::<String>::new());
    }

    /// Polls futures concurrently (no `futures` dependency needed).
    async fn join_all<F: Future>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in fs.iter_mut().enumerate() {
                if out[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => out[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|o| o.unwrap()).collect()
    }
}
