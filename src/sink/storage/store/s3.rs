//! [`S3Store`]: an S3-compatible bucket (AWS S3, MinIO, R2, B2, Garage, Ceph RGW...) through
//! `object_store`, with its own retries off (the publisher retries on its own schedule) and
//! the per-request and connect timeouts set.

use super::{check_key, io_err, Body, Meta, Store, StoreError};
use bytes::Bytes;
use std::sync::Arc;

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
