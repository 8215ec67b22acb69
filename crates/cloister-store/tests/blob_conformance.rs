//! One suite, every blob store: the filesystem default, `ObjectBlobStore` on a local directory
//! (`file://`), and `ObjectBlobStore` on a real S3 server (Garage). Each must round-trip
//! blobs small and multipart, serve ranges, refuse bad ones, and never publish a blob whose
//! stream failed.

mod support;

use std::io;

use bytes::Bytes;
use cloister_store::object_blob::PART_SIZE;
use cloister_store::{BlobError, BlobKey, BlobStore, ByteStream, FsBlobStore, ObjectBlobStore};
use futures::StreamExt;
use sha2::{Digest, Sha256};

fn stream(chunks: Vec<io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Deterministic bytes that differ at every offset a part boundary could fall on.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
}

async fn conformance(store: &dyn BlobStore) {
    // Small: one request.
    let key = BlobKey::new("objects/ab/small").unwrap();
    let info = store
        .put(
            &key,
            stream(vec![
                Ok(Bytes::from_static(b"hello ")),
                Ok(Bytes::from_static(b"world")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(
        info.sha256,
        <[u8; 32]>::from(Sha256::digest(b"hello world"))
    );
    assert_eq!(
        collect(store.get(&key, None).await.unwrap()).await,
        b"hello world"
    );
    assert_eq!(
        collect(store.get(&key, Some(6..11)).await.unwrap()).await,
        b"world"
    );
    assert_eq!(
        collect(store.get(&key, Some(3..3)).await.unwrap()).await,
        b""
    );
    assert!(matches!(
        store.get(&key, Some(6..12)).await,
        Err(BlobError::BadRange { size: 11, .. })
    ));
    assert_eq!(store.size(&key).await.unwrap(), Some(11));

    // Empty.
    let empty = BlobKey::new("objects/empty").unwrap();
    assert_eq!(store.put(&empty, stream(vec![])).await.unwrap().size, 0);
    assert_eq!(collect(store.get(&empty, None).await.unwrap()).await, b"");

    // Large: past one part, in uneven chunks, so it goes multipart on object stores.
    let big = payload(2 * PART_SIZE + 12_345);
    let chunks: Vec<io::Result<Bytes>> = big
        .chunks(1_000_003)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let large = BlobKey::new("layers/sha256/large").unwrap();
    let info = store.put(&large, stream(chunks)).await.unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&big)));
    assert_eq!(collect(store.get(&large, None).await.unwrap()).await, big);
    let r = PART_SIZE as u64 - 10..PART_SIZE as u64 + 10;
    assert_eq!(
        collect(store.get(&large, Some(r.clone())).await.unwrap()).await,
        &big[r.start as usize..r.end as usize]
    );

    // Replacing a blob replaces it whole.
    store
        .put(&key, stream(vec![Ok(Bytes::from_static(b"v2"))]))
        .await
        .unwrap();
    assert_eq!(collect(store.get(&key, None).await.unwrap()).await, b"v2");

    // A failed stream publishes nothing, small or multipart, and leaves the old blob alone.
    for (name, before_failure) in [
        ("objects/failed-small", 100),
        ("objects/failed-large", PART_SIZE * 2),
    ] {
        let k = BlobKey::new(name).unwrap();
        let broken = stream(vec![
            Ok(Bytes::from(payload(before_failure))),
            Err(io::Error::other("client went away")),
        ]);
        let err = store.put(&k, broken).await.unwrap_err();
        assert!(err.to_string().contains("nothing was stored"), "{err}");
        assert_eq!(store.size(&k).await.unwrap(), None, "{name}");
    }
    let broken = stream(vec![
        Ok(Bytes::from_static(b"v3")),
        Err(io::Error::other("gone")),
    ]);
    assert!(store.put(&key, broken).await.is_err());
    assert_eq!(collect(store.get(&key, None).await.unwrap()).await, b"v2");

    // Listing by prefix: whole keys, complete blobs only (the failed ones never appear), each
    // with when it was written.
    let listed = |prefix: &'static str| async move {
        let mut found = store.list(&BlobKey::new(prefix).unwrap()).await.unwrap();
        found.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        found
    };
    let objects = listed("objects").await;
    let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["objects/ab/small", "objects/empty"]);
    let hour = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    for (key, written) in &objects {
        assert!(
            *written > now - hour && *written < now + hour,
            "{key:?} written at {written:?}"
        );
    }
    let layers = listed("layers").await;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].0.as_str(), "layers/sha256/large");
    assert!(listed("uploads").await.is_empty());

    // Deleting.
    assert!(store.delete(&key).await.unwrap());
    assert_eq!(listed("objects").await.len(), 1);
    assert!(!store.delete(&key).await.unwrap());
    assert!(matches!(
        store.get(&key, None).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        store.get(&key, Some(0..1)).await,
        Err(BlobError::NotFound(_))
    ));
    assert_eq!(store.size(&key).await.unwrap(), None);
}

#[tokio::test]
async fn the_filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&FsBlobStore::open(dir.path()).await.unwrap()).await;
}

#[tokio::test]
async fn an_object_store_on_a_local_directory_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = ObjectBlobStore::open(&url, Vec::<(String, String)>::new()).unwrap();
    conformance(&store).await;
}

#[tokio::test]
async fn an_s3_server_conforms() {
    let garage = support::garage::Garage::start();
    let store = ObjectBlobStore::open(
        &format!("s3://{}/cloister-test", garage.bucket),
        garage.options(),
    )
    .unwrap();
    conformance(&store).await;
}

#[test]
fn a_bad_url_is_a_clear_error() {
    let err = ObjectBlobStore::open("not a url", Vec::<(String, String)>::new())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("s3://BUCKET/PREFIX"), "{err}");
    assert!(ObjectBlobStore::open("ftp://host/x", Vec::<(String, String)>::new()).is_err());
}
