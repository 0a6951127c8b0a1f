//! [`MemoryStore`]: objects in a map, for tests and the pure publisher logic; it can simulate an
//! outage ([`MemoryStore::set_failing`]) and a server that lost its data ([`MemoryStore::wipe`]).

use super::{check_key, Body, Meta, Store, StoreError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Objects in a map; `set_failing` and `wipe` simulate an outage and a store that lost its data.
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
