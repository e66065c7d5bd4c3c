use std::time::{Duration, Instant};

use super::*;

fn pool(permits: usize, per_key: usize, waiting_per_key: usize, wait_ms: u64) -> FairPool<u32> {
    FairPool::new(
        "test",
        Limits {
            permits,
            per_key,
            waiting_per_key,
            wait: Duration::from_millis(wait_ms),
            retry_after: Duration::from_secs(3),
        },
    )
}

fn keys_tracked(pool: &FairPool<u32>) -> usize {
    pool.inner.lock_keys().len()
}

#[tokio::test]
async fn one_key_holds_at_most_its_share_and_another_key_gets_in_at_once() {
    let pool = pool(4, 2, 8, 200);
    let a1 = pool.acquire(1).await.expect("first");
    let a2 = pool.acquire(1).await.expect("second");
    // a third of key 1 waits for one of key 1's own permits, although two shared ones are free
    let started = Instant::now();
    let refused = pool.acquire(1).await.expect_err("over its share");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(refused.reason, Reason::KeyAtCap);
    assert_eq!(refused.retry_after_secs, 3);
    // key 2 is not kept waiting by key 1
    let started = Instant::now();
    let b = pool.acquire(2).await.expect("another key");
    assert!(started.elapsed() < Duration::from_millis(100));
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.waiting, stats.refused), (3, 0, 1));
    drop((a1, a2, b));
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(keys_tracked(&pool), 0, "idle keys are forgotten");
}

#[tokio::test]
async fn a_freed_permit_goes_to_the_waiter() {
    let pool = pool(1, 1, 8, 2_000);
    let held = pool.acquire(1).await.expect("held");
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire(2).await.map(|_| Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().waiting, 1);
    let released = Instant::now();
    drop(held);
    let admitted = waiter.await.expect("task").expect("admitted");
    assert!(admitted.duration_since(released) < Duration::from_millis(100));
    let stats = pool.stats();
    assert_eq!((stats.waiting, stats.admitted, stats.refused), (0, 2, 0));
}

#[tokio::test]
async fn waiting_past_the_bound_is_refused_as_busy() {
    let pool = pool(1, 1, 8, 150);
    let _held = pool.acquire(1).await.expect("held");
    let started = Instant::now();
    let refused = pool.acquire(2).await.expect_err("nothing freed");
    let waited = started.elapsed();
    assert_eq!(refused.reason, Reason::Busy);
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_millis(1_000), "{waited:?}");
    assert_eq!(pool.stats().waiting, 0);
}

#[tokio::test]
async fn a_key_with_its_queue_full_is_refused_without_waiting() {
    let pool = pool(1, 1, 2, 5_000);
    let _held = pool.acquire(1).await.expect("held");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire(1).await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().waiting, 2);
    let started = Instant::now();
    let refused = pool.acquire(1).await.expect_err("queue full");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(refused.reason, Reason::KeyAtCap);
    // another key still queues
    let other = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire(2).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.stats().waiting, 3);
    for w in waiters {
        w.abort();
    }
    other.abort();
}

#[tokio::test]
async fn another_key_waits_behind_at_most_one_share_of_a_flood() {
    // one shared permit, one per key: key 1 floods with 6 requests that each hold it 40 ms
    let pool = pool(1, 1, 16, 5_000);
    let mut flood = Vec::new();
    for _ in 0..6 {
        let pool = pool.clone();
        flood.push(tokio::spawn(async move {
            let _p = pool.acquire(1).await.expect("flood admitted");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let permit = pool.acquire(2).await.expect("admitted");
    let waited = started.elapsed();
    drop(permit);
    // behind the one holding and at most the one of key 1 already queued: ~80 ms, not 240 ms
    assert!(waited < Duration::from_millis(150), "{waited:?}");
    for f in flood {
        f.await.expect("flood task");
    }
    assert_eq!(pool.stats().peak_in_use, 1);
}

#[tokio::test]
async fn try_acquire_never_waits_and_says_whose_limit_it_is() {
    let pool = pool(2, 1, 0, 0);
    let a = pool.try_acquire(1).expect("first");
    assert_eq!(
        pool.try_acquire(1).expect_err("key at cap").reason,
        Reason::KeyAtCap
    );
    let b = pool.try_acquire(2).expect("second key");
    assert_eq!(
        pool.try_acquire(3).expect_err("all taken").reason,
        Reason::Busy
    );
    drop(a);
    let _c = pool.try_acquire(3).expect("freed");
    drop(b);
    assert_eq!(pool.stats().refused, 2);
    assert_eq!(keys_tracked(&pool), 1);
}

#[tokio::test]
async fn a_zero_wait_acquire_takes_a_free_permit() {
    let pool = pool(1, 1, 4, 0);
    let held = pool.acquire(1).await.expect("free permit with no wait");
    assert_eq!(
        pool.acquire(2).await.expect_err("none free").reason,
        Reason::Busy
    );
    drop(held);
}

#[tokio::test]
async fn a_cancelled_wait_and_a_panicking_holder_leave_nothing_behind() {
    let pool = pool(1, 1, 4, 5_000);
    let holder = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let _p = pool.acquire(1).await.expect("held");
            tokio::time::sleep(Duration::from_millis(50)).await;
            panic!("the holder fails");
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    // a waiter whose caller goes away (a client that disconnected)
    let gave_up = tokio::time::timeout(Duration::from_millis(10), pool.acquire(2)).await;
    assert!(gave_up.is_err());
    assert_eq!(pool.stats().waiting, 0);
    assert!(holder.await.is_err(), "the holder panicked");
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.waiting), (0, 0));
    assert_eq!(keys_tracked(&pool), 0);
    let _p = pool.try_acquire(3).expect("the permit came back");
}

#[test]
fn limits_are_made_sane() {
    let pool = pool(0, 9, 0, 0);
    let limits = pool.limits();
    assert_eq!((limits.permits, limits.per_key), (1, 1));
}
