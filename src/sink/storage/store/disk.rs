//! [`DiskStore`]: a directory served by nginx, Caddy or any static server. Puts are atomic
//! (temporary dot-file, optional fsync, rename), so a crash never leaves a partial file under
//! a final name.

use super::{check_key, io_err, Body, Meta, Store, StoreError};
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
