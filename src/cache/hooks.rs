//! The calls an engine hands the cache: a weigher and an eviction listener,
//! and what the listener is told.

use crate::bytes::Bytes;
use crate::record::ExtentId;

/// Weighs an entry: its cost against the capacity, in bytes (the cache adds its
/// own per-entry overhead). The default is the payload's length. It runs on
/// the filling thread before the shard's lock is taken, once per fill (the
/// fill waits for it): it should be quick and must not block, nor wait for a
/// load of this cache (the fill it weighs may be the one). A weigher that
/// panics is contained: that value is served but not cached (counted in
/// [`CacheStats::oversized`](super::CacheStats::oversized)).
pub type Weigher = std::sync::Arc<dyn Fn(ExtentId, &[u8]) -> u64 + Send + Sync>;

/// Called with every entry evicted for space, after the shard lock is released
/// (it may use the cache's own calls). Must be quick and must not wait for a
/// load: it runs on the thread whose fill evicted, which may be a prefetch
/// worker holding the loads of extents it reads next, so a store read from
/// it can wait for a load only its own thread would run, and never return.
/// Hand the notification to another thread instead.
pub type EvictionListener = std::sync::Arc<dyn Fn(&Evicted) + Send + Sync>;

/// An entry the cache evicted for space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// The extent.
    pub extent: ExtentId,
    /// The generation of the evicted bytes.
    pub generation: u64,
    /// The bytes.
    pub bytes: Bytes,
    /// Whether it was filled by a prefetch and never read (a wasted prefetch).
    pub unread_prefetch: bool,
}
