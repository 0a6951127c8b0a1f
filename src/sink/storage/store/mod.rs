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
//!
//! Files: [`memory`], [`disk`], [`s3`], one per implementation; [`conformance`], the suite.

mod disk;
mod memory;
mod s3;

#[doc(hidden)]
pub mod conformance;

pub use disk::DiskStore;
pub use memory::{MemoryStore, Observer};
pub use s3::{S3Settings, S3Store};

use crate::policy::Object;
use bytes::Bytes;
use std::future::Future;

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

impl Meta {
    /// The metadata hlsd gives `object` (the origin's headers for the same object).
    pub fn of(object: Object) -> Meta {
        Meta {
            content_type: object.content_type(),
            cache_control: object.cache_control().into_owned(),
        }
    }
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

/// Refuses keys that could escape a store's namespace or name a temporary file.
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

fn io_err(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        key: key.into(),
        // object_store quotes the request URL, which may carry endpoint credentials.
        msg: crate::secret::mask(&e.to_string()),
    }
}
