//! Validated table configuration.

use crate::error::{Error, Result};

/// The largest capacity a table accepts (2^40 ids).
pub const MAX_EXTENTS_LIMIT: u64 = 1 << 40;
/// The most directory entries a table accepts (2^22, about 100 MiB of directory).
pub const MAX_DIRECTORY_LEN: u64 = 1 << 22;

/// Configuration of an [`ExtentTable`](crate::ExtentTable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    max_extents: u64,
    segment_len: usize,
}

impl Default for TableConfig {
    /// 2^26 ids in segments of 16 384 records (512 KiB each); 96 KiB of directory.
    ///
    /// Why 16 384: a random snapshot does one dependent load of its directory entry
    /// before the slot's. With 4 096-record segments a 10 M-record table has a 58 KB
    /// directory, which does not stay in a 48 KiB L1 next to the slots' misses, and
    /// random snapshots cost 1.25× a plain `Vec` read in the table bench; with
    /// 16 384 the directory is 15 KB and they cost 1.21× (medians of three
    /// alternated runs; 65 536 gained 0–2 % more; BENCHMARKS.md, "Snapshot fast
    /// path"). The seqlock read itself costs what a plain copy does, so the
    /// directory is the gap. The price is the growth unit: an id in an untouched
    /// segment allocates 512 KiB, and scans over allocated segments visit 16 384
    /// ids per segment. Tables of sparse ids should set a smaller
    /// [`segment_len`](TableConfigBuilder::segment_len).
    fn default() -> Self {
        TableConfig {
            max_extents: 1 << 26,
            segment_len: 1 << 14,
        }
    }
}

impl TableConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> TableConfigBuilder {
        TableConfigBuilder {
            config: TableConfig::default(),
        }
    }
    /// One past the largest id.
    pub fn max_extents(&self) -> u64 {
        self.max_extents
    }
    /// Records per segment (a power of two).
    pub fn segment_len(&self) -> usize {
        self.segment_len
    }
}

/// Builds a [`TableConfig`]; [`build`](Self::build) checks every bound.
#[derive(Debug, Clone)]
pub struct TableConfigBuilder {
    config: TableConfig,
}

impl TableConfigBuilder {
    /// Ids `0..max_extents` are valid. Bound: 1 ..= 2^40, and at most 2^22
    /// segments of [`segment_len`](Self::segment_len) records: past 2^36
    /// ids (the default's 16 384-record segments) raise `segment_len` too,
    /// to at least `max_extents / 2^22` (2^18 for 2^40).
    pub fn max_extents(mut self, max_extents: u64) -> Self {
        self.config.max_extents = max_extents;
        self
    }

    /// Records per segment, the unit of growth. Bound: a power of two, 1 ..= 2^20,
    /// and at least `max_extents / 2^22` (the directory holds at most 2^22
    /// segments).
    pub fn segment_len(mut self, segment_len: usize) -> Self {
        self.config.segment_len = segment_len;
        self
    }

    /// The configuration, if every bound holds.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of bounds.
    pub fn build(self) -> Result<TableConfig> {
        let c = self.config;
        if c.max_extents == 0 || c.max_extents > MAX_EXTENTS_LIMIT {
            return Err(invalid(
                "max_extents",
                format!("{} not in 1..=2^40", c.max_extents),
            ));
        }
        if !c.segment_len.is_power_of_two() || c.segment_len > 1 << 20 {
            return Err(invalid(
                "segment_len",
                format!("{} is not a power of two in 1..=2^20", c.segment_len),
            ));
        }
        let directory_len = c.max_extents.div_ceil(c.segment_len as u64);
        if directory_len > MAX_DIRECTORY_LEN {
            return Err(invalid(
                "segment_len",
                format!("{directory_len} segments exceed {MAX_DIRECTORY_LEN}: raise segment_len"),
            ));
        }
        Ok(c)
    }
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidConfig { field, reason }
}
