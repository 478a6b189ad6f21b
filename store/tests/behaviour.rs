//! The promises every store keeps, run against each store through the trait
//! alone: what passes for `MemoryStore` in the agent's tests must hold for
//! `FsStore` in production.

use custody_store::{
    Fault, FaultyStore, FsStore, MemoryStore, ObjectStore, PutOptions, PutOutcome, StoreError,
};
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const LATER: OffsetDateTime = datetime!(2026-07-01 00:00:00 UTC);

fn until(t: OffsetDateTime) -> PutOptions {
    PutOptions { retain_until: t }
}

async fn create_only(store: &dyn ObjectStore) {
    let key = "v1/h1/streams/os/00000000000000000001-aa.zst";
    assert_eq!(
        store.put(key, b"first", until(LATER)).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put(key, b"first", until(LATER)).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    match store.put(key, b"other", until(LATER)).await {
        Err(StoreError::Conflict { key: k }) => assert_eq!(k, key),
        other => panic!("different bytes under an existing name must conflict, got {other:?}"),
    }
    // Same length, different bytes: still a conflict (not a length check).
    assert!(matches!(
        store.put(key, b"firsT", until(LATER)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(key).await.unwrap(), b"first");
    let info = store.head(key).await.unwrap().expect("object exists");
    assert_eq!(info.len, 5);
    assert_eq!(info.retain_until, LATER);
    // An identical re-put does not move the retention either.
    store
        .put(key, b"first", until(LATER + time::Duration::days(400)))
        .await
        .unwrap();
    assert_eq!(store.head(key).await.unwrap().unwrap().retain_until, LATER);
}

async fn empty_objects_are_objects(store: &dyn ObjectStore) {
    assert_eq!(
        store.put("e/empty", b"", until(LATER)).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put("e/empty", b"", until(LATER)).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert!(matches!(
        store.put("e/empty", b"x", until(LATER)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get("e/empty").await.unwrap(), b"");
}

async fn missing_objects(store: &dyn ObjectStore) {
    assert!(
        matches!(store.get("no/such").await, Err(StoreError::NotFound { key }) if key == "no/such")
    );
    assert!(store.head("no/such").await.unwrap().is_none());
    assert!(matches!(
        store.set_legal_hold("no/such", true).await,
        Err(StoreError::NotFound { .. })
    ));
    // Lifting a hold that is not there is a no-op.
    store.set_legal_hold("no/such", false).await.unwrap();
}

async fn invalid_names_are_refused(store: &dyn ObjectStore) {
    for key in [
        "",
        "../escape",
        "a/../../b",
        "/abs",
        ".custody-store.json",
        "x/.tmp-1",
        "a//b",
        "sp ace",
    ] {
        assert!(
            matches!(
                store.put(key, b"x", until(LATER)).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{key:?} accepted"
        );
    }
    assert!(store.list("").await.unwrap().is_empty());
}

async fn names_cannot_nest_under_objects(store: &dyn ObjectStore) {
    store.put("a", b"1", until(LATER)).await.unwrap();
    assert!(matches!(
        store.put("a/b", b"2", until(LATER)).await,
        Err(StoreError::InvalidKey { .. })
    ));
    store.put("c/d", b"3", until(LATER)).await.unwrap();
    assert!(matches!(
        store.put("c", b"4", until(LATER)).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert_eq!(store.list("").await.unwrap(), ["a", "c/d"]);
}

async fn list_is_sorted_and_prefixed(store: &dyn ObjectStore) {
    let keys = [
        "v1/h2/x",
        "v1/h1/streams/b/2",
        "v1/h1/streams/a/1",
        "v1/h1/streams/a/10",
        "v1/h10/y",
        "w",
    ];
    for k in keys {
        store.put(k, k.as_bytes(), until(LATER)).await.unwrap();
    }
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    all.sort();
    assert_eq!(store.list("").await.unwrap(), all);
    assert_eq!(
        store.list("v1/h1/").await.unwrap(),
        [
            "v1/h1/streams/a/1",
            "v1/h1/streams/a/10",
            "v1/h1/streams/b/2"
        ]
    );
    // A prefix may end inside a component.
    assert_eq!(store.list("v1/h1").await.unwrap().len(), 4);
    assert_eq!(
        store.list("v1/h1/streams/a/1").await.unwrap(),
        ["v1/h1/streams/a/1", "v1/h1/streams/a/10"]
    );
    assert!(store.list("v1/h3").await.unwrap().is_empty());
    assert!(store.list("zz").await.unwrap().is_empty());
}

async fn retention_is_kept_in_utc_to_the_microsecond(store: &dyn ObjectStore) {
    let taipei = datetime!(2026-07-01 08:00:00.123456789 +08:00);
    store.put("t", b"x", until(taipei)).await.unwrap();
    let info = store.head("t").await.unwrap().unwrap();
    assert_eq!(info.retain_until, datetime!(2026-07-01 00:00:00.123456 UTC));
    assert_eq!(info.retain_until.offset(), time::UtcOffset::UTC);
    assert!(!info.legal_hold);
}

async fn prune_deletes_only_expired_unheld(store: &dyn ObjectStore) {
    store.put("old/free", b"1", until(T0)).await.unwrap();
    store.put("old/held", b"2", until(T0)).await.unwrap();
    store.put("new/free", b"3", until(LATER)).await.unwrap();
    store.put("new/held", b"4", until(LATER)).await.unwrap();
    store.set_legal_hold("old/held", true).await.unwrap();
    store.set_legal_hold("new/held", true).await.unwrap();
    assert!(store.head("old/held").await.unwrap().unwrap().legal_hold);

    // Exactly at retain_until nothing expires: "before now" is strict.
    let report = store.prune(T0).await.unwrap();
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.retained, 4);

    let now = T0 + time::Duration::days(1);
    let report = store.prune(now).await.unwrap();
    assert_eq!(report.deleted, ["old/free"]);
    assert_eq!(report.held, ["old/held"]);
    assert_eq!(report.retained, 2);
    assert!(report.unproven.is_empty());
    assert!(matches!(
        store.get("old/free").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.list("").await.unwrap(),
        ["new/free", "new/held", "old/held"]
    );

    // Lifting the hold lets the next prune take it; pruning again is a no-op.
    store.set_legal_hold("old/held", false).await.unwrap();
    store.set_legal_hold("old/held", false).await.unwrap();
    assert_eq!(store.prune(now).await.unwrap().deleted, ["old/held"]);
    assert!(store.prune(now).await.unwrap().deleted.is_empty());

    // A pruned name may be written again.
    assert_eq!(
        store.put("old/free", b"again", until(LATER)).await.unwrap(),
        PutOutcome::Created
    );
}

/// A put whose acknowledgement was lost is retried by the shipper; the retry
/// must find the object already there, not fail or write twice.
async fn lost_ack_then_retry_is_idempotent<S: ObjectStore>(inner: S) {
    let store = FaultyStore::new(inner);
    let control = store.clone();
    let shipper: &dyn ObjectStore = &store;
    control.set(Fault::FailAfterWrite(1));
    let err = shipper
        .put("k/1", b"payload", until(LATER))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "a lost ack must look retryable: {err}");
    assert_eq!(
        control.inner().get("k/1").await.unwrap(),
        b"payload",
        "the write itself happened"
    );
    assert_eq!(
        shipper.put("k/1", b"payload", until(LATER)).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    let counts = control.counts();
    assert_eq!((counts.put, counts.injected), (2, 1));
}

async fn refused_puts_write_nothing<S: ObjectStore>(inner: S) {
    let store = FaultyStore::new(inner);
    store.set(Fault::FailNextPuts(2));
    for _ in 0..2 {
        assert!(matches!(
            store.put("k/1", b"p", until(LATER)).await,
            Err(StoreError::Unavailable(_))
        ));
    }
    assert!(store.inner().head("k/1").await.unwrap().is_none());
    assert_eq!(
        store.put("k/1", b"p", until(LATER)).await.unwrap(),
        PutOutcome::Created
    );

    store.set(Fault::Unavailable);
    assert!(matches!(
        store.get("k/1").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.list("").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.prune(LATER).await,
        Err(StoreError::Unavailable(_))
    ));
    store.clear();
    assert_eq!(store.get("k/1").await.unwrap(), b"p");
    let counts = store.counts();
    assert_eq!(
        (
            counts.put,
            counts.get,
            counts.list,
            counts.prune,
            counts.injected
        ),
        (3, 2, 1, 1, 5)
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::FsStore::open(dir.path().join("store")).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::MemoryStore::new()).await;
                }
            )*
        }
    };
}

suite!(
    create_only,
    empty_objects_are_objects,
    missing_objects,
    invalid_names_are_refused,
    names_cannot_nest_under_objects,
    list_is_sorted_and_prefixed,
    retention_is_kept_in_utc_to_the_microsecond,
    prune_deletes_only_expired_unheld,
);

#[tokio::test]
async fn fs_lost_ack_then_retry_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    lost_ack_then_retry_is_idempotent(FsStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn memory_lost_ack_then_retry_is_idempotent() {
    lost_ack_then_retry_is_idempotent(MemoryStore::new()).await;
}

#[tokio::test]
async fn fs_refused_puts_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    refused_puts_write_nothing(FsStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn memory_refused_puts_write_nothing() {
    refused_puts_write_nothing(MemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_call() {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Latency(std::time::Duration::from_secs(5)));
    let start = tokio::time::Instant::now();
    store.put("k", b"v", until(LATER)).await.unwrap();
    store.get("k").await.unwrap();
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
    store.set(Fault::Latency(std::time::Duration::ZERO));
    let start = tokio::time::Instant::now();
    store.get("k").await.unwrap();
    assert_eq!(start.elapsed(), std::time::Duration::ZERO);
}
