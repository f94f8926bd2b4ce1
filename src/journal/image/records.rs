//! The records of an [`Image`](super::Image): a map for the images the store
//! takes of itself (checkpoints, tests, the emulator's model), or the extent
//! table itself for recovery, so that an open of millions of records builds
//! no structure beside the table the store then runs on.
//!
//! Recovery used to read every record into a `BTreeMap` and install the map
//! into a table afterwards: about 100 bytes per record in the map beside the
//! table's 32, and the allocator kept the map's freed nodes after the open.
//! Installing each record as it is read keeps an open's memory that of the
//! table plus the journal tail it replays.

use super::RecordImage;
use crate::error::{Error, Result};
use crate::record::{ExtentId, Location, MAX_GENERATION, MAX_VERSION, Snapshot};
use crate::table::{ExtentTable, TableConfig, Tags};
use std::collections::BTreeMap;

/// The newest record of every extent ever committed, by id.
pub(crate) enum Records {
    /// In a map.
    Map(BTreeMap<u64, RecordImage>),
    /// In a table being rebuilt (see [`Installed`]).
    Table(Box<Installed>),
    /// Sorted by id in one list, with the records of other ids inserted
    /// later in a map: a checkpoint's image of a live table (one allocation
    /// for millions of records, not a node per few, beside the writes that go
    /// on meanwhile).
    Sorted(Vec<RecordImage>, BTreeMap<u64, RecordImage>),
}

impl Default for Records {
    fn default() -> Self {
        Records::Map(BTreeMap::new())
    }
}

impl Records {
    /// A table for recovery, every record to be checked against `bounds`.
    pub(crate) fn table(config: TableConfig, bounds: Bounds) -> Records {
        Records::Table(Box::new(Installed {
            table: ExtentTable::new(config),
            tags: Tags::default(),
            tagged: false,
            len: 0,
            bounds,
            refused: None,
        }))
    }

    /// `records`, in one sorted list if their ids ascend (a table's scan
    /// gives them so), else in a map (of equal ids, the last one).
    pub(crate) fn from_list(records: Vec<RecordImage>) -> Records {
        match records.windows(2).all(|w| w[0].extent.0 < w[1].extent.0) {
            true => Records::Sorted(records, BTreeMap::new()),
            false => Records::Map(records.into_iter().map(|r| (r.extent.0, r)).collect()),
        }
    }

    /// `id`'s record.
    pub(crate) fn get(&self, id: u64) -> Option<RecordImage> {
        match self {
            Records::Map(m) => m.get(&id).copied(),
            Records::Table(t) => t.get(id),
            Records::Sorted(list, more) => match list.binary_search_by_key(&id, |r| r.extent.0) {
                Ok(i) => Some(list[i]),
                Err(_) => more.get(&id).copied(),
            },
        }
    }

    /// Replaces `r.extent`'s record with `r`. A table refuses a record out of
    /// range and keeps the first refusal for [`refused`](Self::refused).
    pub(crate) fn insert(&mut self, r: RecordImage) {
        match self {
            Records::Map(m) => {
                m.insert(r.extent.0, r);
            }
            Records::Table(t) => t.insert(r),
            Records::Sorted(list, more) => {
                match list.binary_search_by_key(&r.extent.0, |old| old.extent.0) {
                    Ok(i) => list[i] = r,
                    Err(_) => {
                        more.insert(r.extent.0, r);
                    }
                }
            }
        }
    }

    /// The first record a table refused (see [`Installed::insert`]); `Ok` for a map.
    pub(crate) fn refused(&mut self) -> Result<()> {
        match self {
            Records::Table(t) => t.refused.take().map_or(Ok(()), Err),
            Records::Map(_) | Records::Sorted(..) => Ok(()),
        }
    }

    /// A table's bounds (`None` for a map).
    pub(crate) fn bounds(&self) -> Option<Bounds> {
        match self {
            Records::Table(t) => Some(t.bounds),
            Records::Map(_) | Records::Sorted(..) => None,
        }
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        match self {
            Records::Map(m) => m.len(),
            Records::Table(t) => t.len as usize,
            Records::Sorted(list, more) => list.len() + more.len(),
        }
    }

    /// Every record, by ascending id.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = RecordImage> + '_> {
        match self {
            Records::Map(m) => Box::new(m.values().copied()),
            Records::Table(t) => Box::new(t.iter()),
            Records::Sorted(list, more) => Box::new(Merged {
                list: list.iter().copied().peekable(),
                more: more.values().copied().peekable(),
            }),
        }
    }

    /// Every id, ascending.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|r| r.extent.0)
    }

    /// The records in a map (a copy of a table's).
    pub(crate) fn to_map(&self) -> BTreeMap<u64, RecordImage> {
        match self {
            Records::Map(m) => m.clone(),
            Records::Table(_) | Records::Sorted(..) => {
                self.iter().map(|r| (r.extent.0, r)).collect()
            }
        }
    }

    /// A table's table and tags, the records left as a map copy when `keep`
    /// (the emulator checks them after the store took the table) or empty.
    /// `None` for a map.
    pub(crate) fn take_table(&mut self, keep: bool) -> Option<(ExtentTable, Tags)> {
        let Records::Table(_) = self else {
            return None;
        };
        let copy = if keep { self.to_map() } else { BTreeMap::new() };
        match std::mem::replace(self, Records::Map(copy)) {
            Records::Table(t) => Some((t.table, t.tags)),
            Records::Map(_) | Records::Sorted(..) => None,
        }
    }
}

impl Clone for Records {
    /// A copy in a map: a table is not copied.
    fn clone(&self) -> Self {
        Records::Map(self.to_map())
    }
}

impl PartialEq for Records {
    /// The same records, wherever held.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Records {}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Records::Map(m) => f.debug_map().entries(m.iter()).finish(),
            Records::Table(t) => write!(f, "Table({} records)", t.len),
            Records::Sorted(..) => write!(f, "Sorted({} records)", self.len()),
        }
    }
}

/// What a recovered record must fit: the configured devices and their capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) devices: u16,
    pub(crate) capacity: u64,
}

/// Records installed into the table the store will run on, with their tags.
pub(crate) struct Installed {
    table: ExtentTable,
    tags: Tags,
    /// Whether any tag was set: an untagged store's reads of its records
    /// never take the tags' locks.
    tagged: bool,
    len: u64,
    bounds: Bounds,
    /// The first record refused: recovery reports it once the file that held it
    /// is read, so that replay itself stays infallible and shared with the map.
    refused: Option<Error>,
}

impl Installed {
    fn get(&self, id: u64) -> Option<RecordImage> {
        // Out of range or mid-publish (never, before the table is shared):
        // no record; an insert of one is refused.
        let s = self.table.try_snapshot(ExtentId(id)).ok().flatten()?;
        let tag = match self.tagged {
            true => self.tags.get(s.extent(), s.generation()),
            false => crate::record::Tag::EMPTY,
        };
        (s.version() > 0).then(|| RecordImage::of(&s, tag))
    }

    /// Installs `r` over whatever the table holds for its extent, after the
    /// range checks rebuilding always made: a version or generation out of
    /// range is damage ([`Error::CheckpointCorrupt`]); a location past the
    /// configured devices, or an id past the table's `max_extents`, is a
    /// configuration that shrank ([`Error::InvalidConfig`], see
    /// [`shrunk_config`]).
    fn insert(&mut self, r: RecordImage) {
        if self.refused.is_some() {
            return;
        }
        if let Err(err) = self.check(&r) {
            self.refused = Some(err);
            return;
        }
        let old = self.get(r.extent.0);
        let snapshot = Snapshot::recovered(
            r.extent,
            r.version,
            r.state,
            r.generation,
            r.location,
            r.checksum,
        );
        if let Err(err) = self.table.restore(&snapshot) {
            self.refused = Some(err);
            return;
        }
        // Untagged stores never touch the tags' locks.
        if let Some(old) = old.filter(|o| !o.tag.is_empty() && o.generation != r.generation) {
            self.tags.forget(old.extent, old.generation);
        }
        if !r.tag.is_empty() || old.is_some_and(|o| !o.tag.is_empty()) {
            self.tags.set(r.extent, r.generation, r.tag);
            self.tagged = true;
        }
        self.len += u64::from(old.is_none());
    }

    fn check(&self, r: &RecordImage) -> Result<()> {
        if !r.version.is_multiple_of(2)
            || r.version == 0
            || r.version > MAX_VERSION
            || r.generation > MAX_GENERATION
        {
            return Err(Error::CheckpointCorrupt {
                file: format!("record of {}", r.extent),
                reason: "a recovered record is out of range",
            });
        }
        let b = self.bounds;
        if r.location.device >= b.devices || r.location.end() > b.capacity {
            return Err(shrunk_config(r.location, b));
        }
        let max_extents = self.table.capacity();
        if r.extent.0 >= max_extents {
            return Err(Error::InvalidConfig {
                field: "max_extents",
                reason: format!(
                    "{max_extents} is smaller than the store in this directory needs: it holds a record of {}; open it with the configuration it was created with",
                    r.extent
                ),
            });
        }
        Ok(())
    }

    fn iter(&self) -> impl Iterator<Item = RecordImage> + '_ {
        (self.table.allocated_ids(0)).filter_map(|id| self.get(id.0))
    }
}

/// A checksummed record references `location` past the configured devices: the
/// configuration shrank since the record was written, a mistake to correct, not
/// damage to restore from a backup.
pub(crate) fn shrunk_config(location: Location, bounds: Bounds) -> Error {
    let (field, bound) = if location.device >= bounds.devices {
        ("devices", u64::from(bounds.devices))
    } else {
        ("device_capacity_bytes", bounds.capacity)
    };
    Error::InvalidConfig {
        field,
        reason: format!(
            "{bound} is smaller than the store in this directory needs: a record references {} bytes at offset {} of device {}; open it with the configuration it was created with",
            location.length, location.offset, location.device
        ),
    }
}

/// The store was created with `created` devices, the configuration says
/// `configured`.
pub(crate) fn other_devices(created: u16, configured: u16) -> Error {
    Error::InvalidConfig {
        field: "devices",
        reason: format!(
            "the store was created with {created} devices, the configuration says {configured}"
        ),
    }
}

/// Two lists of records sorted by id, of distinct ids, merged in id order.
struct Merged<A: Iterator<Item = RecordImage>, B: Iterator<Item = RecordImage>> {
    list: std::iter::Peekable<A>,
    more: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = RecordImage>, B: Iterator<Item = RecordImage>> Iterator for Merged<A, B> {
    type Item = RecordImage;

    fn next(&mut self) -> Option<RecordImage> {
        match (self.list.peek(), self.more.peek()) {
            (Some(a), Some(b)) if b.extent.0 < a.extent.0 => self.more.next(),
            (Some(_), _) => self.list.next(),
            (None, _) => self.more.next(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::{State, Tag};

    /// Extent `id`'s record at `version`, generation `version / 2`, at a
    /// location of its own.
    fn r(id: u64, version: u64) -> RecordImage {
        RecordImage {
            extent: ExtentId(id),
            version,
            state: State::Durable,
            generation: version / 2,
            location: Location::new(0, id * 512 + version, 16),
            checksum: (id * 1000 + version) as u32,
            tag: Tag::EMPTY,
        }
    }

    fn table() -> Records {
        Records::table(
            TableConfig::default(),
            Bounds {
                devices: 1,
                capacity: 1 << 30,
            },
        )
    }

    #[test]
    fn a_sorted_list_and_a_table_read_as_the_map_of_the_same_inserts() {
        // Defect: a record inserted for a new id lost in the merge or out of
        // order, an insert over a listed id counted twice, or a table that
        // returns another record than the one installed.
        let first = [r(2, 2), r(5, 2), r(9, 2)];
        let later = [r(1, 4), r(5, 6), r(7, 4), r(12, 4)];
        let mut map = Records::default();
        let mut sorted = Records::from_list(first.to_vec());
        let mut installed = table();
        for x in first {
            map.insert(x);
            installed.insert(x);
        }
        for x in later {
            for records in [&mut map, &mut sorted, &mut installed] {
                records.insert(x);
            }
        }
        installed.refused().expect("in range");
        for records in [&sorted, &installed] {
            assert_eq!(*records, map);
            assert_eq!(records.len(), 6);
            assert_eq!(records.get(5), Some(r(5, 6)));
            assert_eq!(records.get(3), None);
        }
        let unsorted = Records::from_list(vec![r(5, 2), r(2, 2)]);
        assert_eq!(unsorted.keys().collect::<Vec<_>>(), vec![2, 5]);
    }

    #[test]
    fn a_table_refuses_what_a_rebuild_refused_and_keeps_tags_by_generation() {
        // Defect: an odd version or a location past the devices installed, or
        // a replaced generation's tag kept.
        let mut bad = table();
        bad.insert(r(1, 3));
        assert!(matches!(
            bad.refused(),
            Err(Error::CheckpointCorrupt { .. })
        ));
        let mut far = table();
        let mut past = r(1, 2);
        past.location.device = 1;
        far.insert(past);
        assert!(matches!(
            far.refused(),
            Err(Error::InvalidConfig {
                field: "devices",
                ..
            })
        ));
        let mut tagged = table();
        let mut t = r(4, 2);
        t.tag = Tag::new(b"extent 4 gen 1").expect("short");
        tagged.insert(t);
        assert_eq!(tagged.get(4), Some(t));
        tagged.insert(r(4, 4));
        assert_eq!(
            tagged.get(4),
            Some(r(4, 4)),
            "the new generation is untagged"
        );
        let Some((_, tags)) = tagged.take_table(false) else {
            panic!("a table");
        };
        assert_eq!(
            tags.get(ExtentId(4), 1),
            Tag::EMPTY,
            "the old generation's tag"
        );
    }
}
