//! Fair admission to a bounded resource (image downloads, password hashing, event streams,
//! imports; decision 0043): `permits` in use at once in the process, at most `per_key` of them
//! held by one key (a tenant, a client address), at most `waiting_per_key` of a key's requests
//! waiting, and no wait longer than `wait`. A request that cannot get in answers at once or after
//! the wait with a [`Refusal`] saying when to retry, instead of queueing everyone behind it.
//!
//! How: a key first takes one of its own `per_key` permits, then one of the shared `permits`
//! (both tokio semaphores, first come first served). So one key has at most `per_key` requests
//! holding or waiting for a shared permit, and a request of another key waits behind at most
//! `per_key` requests of each busy key, never behind all of one key's flood.
//!
//! Process-local: with several instances every limit holds per instance.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const IN_USE: &str = "herald_pool_in_use";
const WAITING: &str = "herald_pool_waiting";

/// The limits of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Permits in use at once in this process (at least 1).
    pub permits: usize,
    /// Permits one key may hold at once (at least 1, at most `permits`).
    pub per_key: usize,
    /// Requests of one key that may wait; past it a request is refused at once.
    pub waiting_per_key: usize,
    /// Longest wait for a permit; zero: never wait.
    pub wait: Duration,
    /// What a refusal tells the caller to wait before trying again.
    pub retry_after: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// When trying again makes sense (whole seconds, at least one: `Retry-After`).
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The key holds all it may (or has all it may waiting): its own usage, not the process's.
    KeyAtCap,
    /// Every permit of the process is taken and none freed within the wait.
    Busy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::KeyAtCap => "key_at_cap",
            Reason::Busy => "busy",
        }
    }
}

/// What a pool is doing, for tests and the `/metrics` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub in_use: usize,
    pub waiting: usize,
    /// The most permits ever in use at once.
    pub peak_in_use: usize,
    pub refused: u64,
    pub admitted: u64,
}

/// A pool; cheap to clone (clones share the permits).
pub struct FairPool<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for FairPool<K> {
    fn clone(&self) -> Self {
        FairPool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    name: &'static str,
    limits: Limits,
    shared: Arc<Semaphore>,
    /// Only keys with a request holding or waiting: an entry goes with its key's last request.
    keys: Mutex<HashMap<K, KeyState>>,
    in_use: AtomicUsize,
    waiting: AtomicUsize,
    peak_in_use: AtomicUsize,
    refused: AtomicU64,
    admitted: AtomicU64,
}

struct KeyState {
    permits: Arc<Semaphore>,
    waiting: usize,
}

/// A held permit: released when dropped, whatever way the holder ends (error, panic, a client
/// that went away).
pub struct Permit<K: Hash + Eq + Clone> {
    inner: Arc<Inner<K>>,
    key: K,
    held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl<K: Hash + Eq + Clone> FairPool<K> {
    /// `name` labels the metrics (`herald_pool_*{pool="<name>"}`).
    pub fn new(name: &'static str, limits: Limits) -> Self {
        let permits = limits.permits.max(1);
        let limits = Limits {
            permits,
            per_key: limits.per_key.clamp(1, permits),
            ..limits
        };
        FairPool {
            inner: Arc::new(Inner {
                name,
                limits,
                shared: Arc::new(Semaphore::new(permits)),
                keys: Mutex::new(HashMap::new()),
                in_use: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                peak_in_use: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
                admitted: AtomicU64::new(0),
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            in_use: i.in_use.load(Ordering::Relaxed),
            waiting: i.waiting.load(Ordering::Relaxed),
            peak_in_use: i.peak_in_use.load(Ordering::Relaxed),
            refused: i.refused.load(Ordering::Relaxed),
            admitted: i.admitted.load(Ordering::Relaxed),
        }
    }

    /// A permit for `key`, waiting at most the pool's `wait`. Cancel-safe: a caller that stops
    /// waiting leaves no trace.
    pub async fn acquire(&self, key: K) -> Result<Permit<K>, Refusal> {
        let inner = &self.inner;
        let key_permits = {
            let mut keys = inner.lock_keys();
            let state = keys.entry(key.clone()).or_insert_with(|| KeyState {
                permits: Arc::new(Semaphore::new(inner.limits.per_key)),
                waiting: 0,
            });
            let must_wait =
                state.permits.available_permits() == 0 || inner.shared.available_permits() == 0;
            if must_wait && state.waiting >= inner.limits.waiting_per_key {
                let at_cap = state.permits.available_permits() == 0;
                drop(keys);
                inner.tidy(&key);
                return Err(inner.refuse(if at_cap {
                    Reason::KeyAtCap
                } else {
                    Reason::Busy
                }));
            }
            state.waiting += 1;
            state.permits.clone()
        };
        let waiting = Waiting::new(inner, &key);
        let mut own = None;
        let taken = tokio::time::timeout(inner.limits.wait, async {
            own = Some(key_permits.acquire_owned().await.ok()?);
            inner.shared.clone().acquire_owned().await.ok()
        })
        .await;
        match (taken, own) {
            (Ok(Some(shared)), Some(own)) => {
                waiting.admitted();
                Ok(Permit::new(inner.clone(), key, own, shared))
            }
            (_, own) => {
                let reason = if own.is_some() {
                    Reason::Busy
                } else {
                    Reason::KeyAtCap
                };
                drop(own);
                drop(waiting);
                Err(inner.refuse(reason))
            }
        }
    }

    /// A permit for `key` only if one is free now.
    pub fn try_acquire(&self, key: K) -> Result<Permit<K>, Refusal> {
        let inner = &self.inner;
        let own = {
            let mut keys = inner.lock_keys();
            let state = keys.entry(key.clone()).or_insert_with(|| KeyState {
                permits: Arc::new(Semaphore::new(inner.limits.per_key)),
                waiting: 0,
            });
            state.permits.clone().try_acquire_owned()
        };
        let Ok(own) = own else {
            inner.tidy(&key);
            return Err(inner.refuse(Reason::KeyAtCap));
        };
        match inner.shared.clone().try_acquire_owned() {
            Ok(shared) => {
                inner.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Permit::new(inner.clone(), key, own, shared))
            }
            Err(_) => {
                drop(own);
                inner.tidy(&key);
                Err(inner.refuse(Reason::Busy))
            }
        }
    }
}

impl<K: Hash + Eq + Clone> Inner<K> {
    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<K, KeyState>> {
        // a panic while holding this lock leaves the map consistent (no code between updates)
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `key` when nothing of it holds or waits any more.
    fn tidy(&self, key: &K) {
        let mut keys = self.lock_keys();
        if let Some(state) = keys.get(key) {
            let idle = state.waiting == 0
                && state.permits.available_permits() == self.limits.per_key
                && Arc::strong_count(&state.permits) == 1;
            if idle {
                keys.remove(key);
            }
        }
    }

    fn refuse(&self, reason: Reason) -> Refusal {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("herald_pool_refused_total", "pool" => self.name, "reason" => reason.as_str())
            .increment(1);
        Refusal {
            reason,
            retry_after_secs: self.limits.retry_after.as_secs().max(1),
        }
    }

    /// Moves a gauge by `by` (moves, not sets: concurrent updates cannot leave a stale value).
    fn gauge(&self, gauge: &'static str, by: f64) {
        metrics::gauge!(gauge, "pool" => self.name).increment(by);
    }
}

/// One request counted as waiting, until it is admitted or gives up (also when its future is
/// dropped mid-wait).
struct Waiting<'a, K: Hash + Eq + Clone> {
    inner: &'a Inner<K>,
    key: &'a K,
}

impl<'a, K: Hash + Eq + Clone> Waiting<'a, K> {
    fn new(inner: &'a Inner<K>, key: &'a K) -> Self {
        inner.waiting.fetch_add(1, Ordering::Relaxed);
        inner.gauge(WAITING, 1.0);
        Waiting { inner, key }
    }

    fn admitted(self) {
        self.inner.admitted.fetch_add(1, Ordering::Relaxed);
    }
}

impl<K: Hash + Eq + Clone> Drop for Waiting<'_, K> {
    fn drop(&mut self) {
        if let Some(state) = self.inner.lock_keys().get_mut(self.key) {
            state.waiting = state.waiting.saturating_sub(1);
        }
        self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
        self.inner.gauge(WAITING, -1.0);
        self.inner.tidy(self.key);
    }
}

impl<K: Hash + Eq + Clone> Permit<K> {
    fn new(
        inner: Arc<Inner<K>>,
        key: K,
        own: OwnedSemaphorePermit,
        shared: OwnedSemaphorePermit,
    ) -> Self {
        let now = inner.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        inner.peak_in_use.fetch_max(now, Ordering::Relaxed);
        inner.gauge(IN_USE, 1.0);
        Permit {
            inner,
            key,
            held: Some((own, shared)),
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        // counted out before the semaphores let the next one in, so `in_use` never shows a
        // holder that has already given its permit back
        self.inner.in_use.fetch_sub(1, Ordering::Relaxed);
        self.inner.gauge(IN_USE, -1.0);
        drop(self.held.take());
        self.inner.tidy(&self.key);
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Permit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permit({})", self.inner.name)
    }
}

#[cfg(test)]
mod tests;
