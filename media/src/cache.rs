//! The dispatcher's images: each stored JPEG is loaded from `media` and turned into a data URL
//! once per process, then shared by every recipient of every campaign that sends it.
//!
//! Concurrent first requests for the same image wait for the one load in flight (a `OnceCell`
//! per hash) instead of each reading the database. The cache holds at most
//! [`MediaCache::CAPACITY`] images (each at most ~1.4 MB as base64), so it is bounded however
//! many image campaigns a process has seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::OnceCell;

type Entry = Arc<OnceCell<Arc<str>>>;

pub struct MediaCache {
    pool: PgPool,
    entries: Mutex<HashMap<String, Entry>>,
    loads: AtomicU64,
}

impl MediaCache {
    /// Images kept at once; a campaign rarely uses more than one, a process runs a few at a time.
    pub const CAPACITY: usize = 16;

    pub fn new(pool: PgPool) -> Self {
        MediaCache {
            pool,
            entries: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
        }
    }

    /// The image with this hash as `data:image/jpeg;base64,...`; `None` when it is not stored.
    /// Database errors and misses are not cached (the next call reads again): an image that is
    /// stored again after the collector removed it (decision 0024) is found at once.
    pub async fn data_url(&self, sha256: &str) -> Result<Option<Arc<str>>, sqlx::Error> {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if !entries.contains_key(sha256) && entries.len() >= Self::CAPACITY {
                // Drop the loaded ones; loads in flight keep their cell through their Arc.
                entries.retain(|_, cell| !cell.initialized());
            }
            entries.entry(sha256.to_string()).or_default().clone()
        };
        let value = cell
            .get_or_try_init(|| async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("herald_media_loads_total").increment(1);
                match crate::load(&self.pool, sha256).await? {
                    Some(bytes) => Ok(Arc::from(crate::data_url(&bytes))),
                    None => Err(Miss::Missing),
                }
            })
            .await;
        match value {
            Ok(url) => Ok(Some(url.clone())),
            Err(Miss::Missing) => Ok(None),
            Err(Miss::Database(e)) => Err(e),
        }
    }

    /// How many times an image was read from the database by this cache.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

/// Why a load left its cell empty.
enum Miss {
    Missing,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Miss {
    fn from(e: sqlx::Error) -> Self {
        Miss::Database(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{store, PreparedImage};

    async fn pool() -> PgPool {
        herald_migrations::testing::fresh_database()
            .await
            .expect("a fresh, migrated database")
    }

    fn image(byte: u8) -> PreparedImage {
        let jpeg = vec![0xff, 0xd8, byte, 0xff, 0xd9];
        PreparedImage {
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&jpeg)),
            jpeg,
            width: 1,
            height: 1,
            source_url: None,
        }
    }

    #[tokio::test]
    async fn many_concurrent_senders_load_an_image_once() {
        let pool = pool().await;
        let img = image(1);
        store(&pool, &img).await.expect("stored");
        store(&pool, &img).await.expect("storing again is harmless");
        let cache = Arc::new(MediaCache::new(pool));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let cache = cache.clone();
                let sha = img.sha256.clone();
                tokio::spawn(async move { cache.data_url(&sha).await })
            })
            .collect();
        for task in tasks {
            let url = task.await.expect("joins").expect("loads").expect("stored");
            assert_eq!(&*url, img.data_url().as_str());
        }
        assert_eq!(cache.loads(), 1, "one database read for 64 senders");
        assert_eq!(cache.data_url(&"0".repeat(64)).await.expect("query"), None);
    }

    #[tokio::test]
    async fn a_missing_image_is_found_once_it_is_stored_again() {
        let pool = pool().await;
        let img = image(7);
        let cache = MediaCache::new(pool.clone());
        assert_eq!(cache.data_url(&img.sha256).await.expect("query"), None);
        store(&pool, &img).await.expect("stored");
        let url = cache.data_url(&img.sha256).await.expect("query");
        assert_eq!(url.as_deref(), Some(img.data_url().as_str()));
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let pool = pool().await;
        let cache = MediaCache::new(pool.clone());
        for i in 0..40u8 {
            let img = image(i);
            store(&pool, &img).await.expect("stored");
            assert!(cache.data_url(&img.sha256).await.expect("loads").is_some());
            let held = cache.entries.lock().expect("lock").len();
            assert!(held <= MediaCache::CAPACITY, "{held} entries");
        }
        assert_eq!(cache.loads(), 40);
    }
}
