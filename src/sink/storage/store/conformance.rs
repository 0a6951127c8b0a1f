//! The behaviour every store must have, as one suite run on each implementation (memory and disk
//! by the unit tests, a real S3 server by tests/storage.rs); it panics at the first deviation.

use super::{Meta, Store, StoreError};
use bytes::Bytes;
use std::future::Future;

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
