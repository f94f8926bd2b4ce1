//! Recovery's decision on the records of overlapped writes (`Entry::Unsynced`,
//! see "Overlapped data syncs" in `journal`), and the data to write back once
//! the records that stand are known.

use super::{Entry, Fallback, Location, RecordImage, Recovered};
use crate::bytes::Bytes;

impl Recovered {
    /// Decides every record journaled while its data's sync ran
    /// ([`Entry::Unsynced`]) that is still current and no [`Entry::Synced`]
    /// covered. `read` returns the bytes at a location as the device shows them
    /// (`None` past its end).
    ///
    /// * A record whose data verifies against its checksum stays.
    /// * Otherwise the write was never acknowledged (unless a fault damaged its
    ///   data before its marker was journaled, the window the module docs
    ///   name), and its extent gets back the newest record it may fall back to
    ///   ([`Fallback`]): a commit, or an earlier overlapped write's record whose
    ///   own data verifies, else no record at all.
    /// * Unless that record's location is referenced by another extent's record
    ///   (as recovery found them, before deciding anything): then the write had
    ///   committed and the location was reused, and its data was durable before
    ///   a fault damaged it. The record stays (the device-length check skips it)
    ///   and the fault is the verifier's to report. A store keeps that location
    ///   until the write's marker is durable (`Overlaps::carried`), so only a
    ///   journal of a build that freed it at the commit (or a device that lost
    ///   synced bytes) gets here.
    ///
    /// Every decision is journaled by the reopen (restored records as commits
    /// at the dropped record's version, kept ones as markers), so no later
    /// recovery decides again; the bytes of every record kept because its data
    /// was read are written back with the redo (a failed sync may have left
    /// them in the page cache, clean but never written: only writing them
    /// again makes the reopen's device sync persist them). Then chooses the data
    /// to write back ([`redo`](Self::redo)).
    ///
    /// # Errors
    ///
    /// `read`'s: a device that cannot be read is not taken for one that holds no
    /// data (the open fails and changes nothing).
    pub(crate) fn settle_unsynced(
        &mut self,
        mut device_read: impl FnMut(Location) -> crate::Result<Option<Vec<u8>>>,
    ) -> crate::Result<()> {
        // A fallback record lost to a newer one in replay and was never range
        // checked: one past the configuration is refused before any read (a
        // read of it would be an I/O error, or allocate up to 4 GiB).
        let bounds = self.image.records.bounds();
        let mut read = |l: Location| match bounds {
            Some(b) if l.device >= b.devices || l.end() > b.capacity => {
                Err(super::records::shrunk_config(l, b))
            }
            _ => device_read(l),
        };
        if self.image.unsynced.is_empty() {
            self.choose_redo();
            return Ok(());
        }
        let wanted: Vec<Location> = (self.image.unsynced.values())
            .flatten()
            .filter_map(|f| f.record.filter(RecordImage::references))
            .map(|r| r.location)
            .collect();
        let taken = References::of(&self.image.records, wanted);
        let image = &mut self.image;
        for (id, chain) in std::mem::take(&mut image.unsynced) {
            let Some(r) = image.records.get(id) else {
                continue;
            };
            let keep = |this: &mut Vec<Entry>| {
                this.push(Entry::Synced {
                    extent: r.extent,
                    version: r.version,
                });
            };
            if r.references()
                && let Some(bytes) = holding(&mut read, &r)?
            {
                keep(&mut self.unsynced_kept);
                self.rewrite.push((r.location, bytes));
                continue;
            }
            let Some((back, bytes)) = fall_back(&mut read, r, chain)? else {
                continue;
            };
            if back.references() && taken.other_than(back.extent.0, back.location) {
                keep(&mut self.unsynced_kept);
                self.unverified.push(r.location);
                continue;
            }
            // Committed (the dropped proposal was made on top of a commit) at
            // the dropped one's version: the next write then proposes a version
            // no journal holds yet, and this commit wins over the dropped
            // proposal at their equal version in every later recovery, once the
            // reopen has journaled it.
            image.records.insert(back);
            image.proposed.remove(&id);
            self.unsynced_dropped.push(Entry::Put(back));
            if let Some(bytes) = bytes {
                self.rewrite.push((back.location, bytes));
            }
        }
        // A record restored here went through the table's checks only now (a
        // fallback journaled after the dropped write's record lost to it in
        // replay, unchecked): one it refused is the open's error, as in replay.
        self.image.records.refused()?;
        self.choose_redo();
        Ok(())
    }

    /// The data to write back before anything is appended (see
    /// [`redo`](Self::redo)): the inline data whose record the image still
    /// names, and the bytes [`settle_unsynced`](Self::settle_unsynced) read. The
    /// recovered record must still name the inline bytes: same location,
    /// generation and checksum, durable or quarantined (a quarantine keeps the
    /// record and its location: the last good copy, invariant 8, may be exactly
    /// these bytes; the crash sweep found a quarantine after transient errors
    /// that left them only in the journal).
    ///
    /// Per extent, the newest inline entry that names those bytes, not the
    /// newest inline entry: a later write's entry may have been journaled and
    /// then lost to a quarantine of the generation before it (the emulator's
    /// full-disk sweep found that record kept, its bytes in an older entry).
    pub(super) fn choose_redo(&mut self) {
        let records = &self.image.records;
        self.redo = (self.inline.chunk_by(|a, b| a.0.extent == b.0.extent))
            .filter_map(|entries| {
                let f = records
                    .get(entries[0].0.extent.0)
                    .filter(|f| f.references())?;
                let named = (f.location, f.generation, f.checksum);
                (entries.iter().rev())
                    .find(|(r, _)| (r.location, r.generation, r.checksum) == named)
            })
            .map(|(r, data)| (r.location, data.clone()))
            .chain(self.rewrite.iter().cloned())
            .collect();
    }
}

/// `r`'s bytes if the device holds them (its checksum verifies).
fn holding(
    read: &mut impl FnMut(Location) -> crate::Result<Option<Vec<u8>>>,
    r: &RecordImage,
) -> crate::Result<Option<Bytes>> {
    let len = r.location.length as usize;
    Ok(read(r.location)?
        .filter(|d| {
            d.len() >= len
                && crate::record::checksum(r.extent, r.generation, &d[..len]) == r.checksum
        })
        .map(|mut d| {
            d.truncate(len);
            Bytes::from(d)
        }))
}

/// The record to restore in place of `r` (at `r`'s version), newest first: a
/// commit or a record that needs no check as it is, an overlapped write's
/// record if its data verifies (with the bytes read), else none (a vacant
/// record one generation below the oldest overlapped write's). `None` if the
/// chain is empty (it never is).
fn fall_back(
    read: &mut impl FnMut(Location) -> crate::Result<Option<Vec<u8>>>,
    r: RecordImage,
    mut chain: Vec<Fallback>,
) -> crate::Result<Option<(RecordImage, Option<Bytes>)>> {
    let version = |f: &Fallback| f.record.map_or(0, |c| c.version);
    chain.sort_by_key(|f| std::cmp::Reverse((version(f), f.commit)));
    let oldest = (chain.iter())
        .filter_map(|f| f.record)
        .map(|c| c.generation)
        .chain([r.generation])
        .min()
        .unwrap_or(r.generation);
    for f in &chain {
        let (record, bytes) = match f.record {
            None => (vacant(r, oldest.saturating_sub(1)), None),
            Some(c) if f.verify && c.references() => match holding(read, &c)? {
                Some(bytes) => (c, Some(bytes)),
                None => continue,
            },
            Some(c) => (c, None),
        };
        return Ok(Some((
            RecordImage {
                version: r.version,
                ..record
            },
            bytes,
        )));
    }
    Ok(None)
}

/// `r`'s extent without a record, at `generation`.
fn vacant(r: RecordImage, generation: u64) -> RecordImage {
    RecordImage {
        extent: r.extent,
        version: r.version,
        state: crate::record::State::Vacant,
        generation,
        location: Location::default(),
        checksum: 0,
        tag: crate::record::Tag::EMPTY,
    }
}

/// The locations the recovered records reference, for overlap queries.
struct References {
    /// `(device, offset)` → `(end, extent)`, sorted.
    by_start: Vec<((u16, u64), (u64, u64))>,
}

impl References {
    /// The records whose locations overlap one of `wanted` (the only ones
    /// [`other_than`](Self::other_than) is asked about): bounded by the
    /// journal's overlapped writes, not by the table.
    fn of(records: &super::Records, mut wanted: Vec<Location>) -> Self {
        wanted.sort_unstable_by_key(|l| (l.device, l.offset));
        let longest = wanted
            .iter()
            .map(|l| u64::from(l.length))
            .max()
            .unwrap_or(0);
        let overlaps = |r: &RecordImage| {
            let (device, start, end) = (r.location.device, r.location.offset, r.location.end());
            let from = wanted.partition_point(|w| {
                (w.device, w.offset) < (device, start.saturating_sub(longest))
            });
            (wanted[from..].iter())
                .take_while(|w| (w.device, w.offset) < (device, end))
                .any(|w| w.device == device && w.end() > start)
        };
        let mut by_start: Vec<_> = (records.iter())
            .filter(|r| r.references() && overlaps(r))
            .map(|r| {
                (
                    (r.location.device, r.location.offset),
                    (r.location.end(), r.extent.0),
                )
            })
            .collect();
        by_start.sort_unstable();
        References { by_start }
    }

    /// Whether a record of an extent other than `extent` references bytes of
    /// `l`. Locations of distinct records never overlap one another, so only the
    /// last one starting before `l` ends, and those starting inside it, can.
    fn other_than(&self, extent: u64, l: Location) -> bool {
        let end = self
            .by_start
            .partition_point(|&(start, _)| start < (l.device, l.end()));
        (self.by_start[..end].iter().rev())
            .take_while(|&&((device, _), _)| device == l.device)
            .take_while(|&&((_, offset), (e, _))| e > l.offset || offset >= l.offset)
            .any(|&((_, _), (e, owner))| owner != extent && e > l.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Image;
    use crate::record::{ExtentId, State, Tag, checksum};

    /// A record of extent 1 at `generation` and `version`, at `offset` on
    /// device 0, whose checksum is that of [`data`].
    fn record(version: u64, generation: u64, offset: u64) -> RecordImage {
        RecordImage {
            extent: ExtentId(1),
            version,
            state: State::Durable,
            generation,
            location: Location::new(0, offset, 8),
            checksum: checksum(ExtentId(1), generation, &data(generation)),
            tag: Tag::EMPTY,
        }
    }

    /// The bytes of generation `generation`: its number, repeated.
    fn data(generation: u64) -> Vec<u8> {
        vec![generation as u8; 8]
    }

    /// Nothing recovered yet, into a table of 16 extents over one device of
    /// 64 KiB: a record past that is refused.
    fn in_a_small_table() -> Recovered {
        let config = crate::table::TableConfig::builder()
            .max_extents(16)
            .segment_len(8)
            .build()
            .expect("valid");
        let bounds = crate::journal::Bounds {
            devices: 1,
            capacity: 65_536,
        };
        let mut r = Recovered::fresh(1);
        r.image = Image {
            records: crate::journal::Records::table(config, bounds),
            ..Image::default()
        };
        r
    }

    fn recovered(entries: &[Entry]) -> Recovered {
        let mut r = Recovered::fresh(1);
        r.image = Image::default();
        for e in entries {
            r.image.apply(e);
        }
        r
    }

    /// A compaction commits (v6, at 4096) before it journals; a write proposes
    /// on top of it and its overlapped record (v10) reaches the journal first.
    /// The write's data never became durable: the extent falls back to the
    /// compaction's record, not to the one before it, whose location is free.
    #[test]
    fn a_record_journaled_after_an_overlapped_one_is_the_one_restored() {
        let old = record(2, 1, 0);
        let moved = RecordImage {
            version: 6,
            location: Location::new(0, 4096, 8),
            ..old
        };
        let write = record(10, 2, 8192);
        let mut r = recovered(&[Entry::Put(old), Entry::Unsynced(write), Entry::Put(moved)]);
        r.settle_unsynced(|l| {
            Ok(match l.offset {
                4096 => Some(data(1)),
                _ => None,
            })
        })
        .unwrap();
        let back = r.image.records.get(1).expect("record");
        assert_eq!(
            (back.version, back.generation, back.location),
            (10, 1, moved.location)
        );
        assert_eq!(r.unsynced_dropped, vec![Entry::Put(back)]);
    }

    /// The compaction's record lies past a device that shrank since: replay
    /// never checked it (it lost to the overlapped record), so restoring it
    /// is the open's error, not a record dropped in silence.
    #[test]
    fn a_fallback_the_table_refuses_is_the_opens_error() {
        let old = record(2, 1, 0);
        let moved = RecordImage {
            version: 6,
            location: Location::new(0, 1 << 20, 8),
            ..old
        };
        let write = record(10, 2, 8192);
        let mut r = in_a_small_table();
        for e in [Entry::Put(old), Entry::Unsynced(write), Entry::Put(moved)] {
            r.image.apply(&e);
        }
        r.image.records.refused().expect("replay refused nothing");
        let err = r
            .settle_unsynced(|l| Ok((l.offset == 1 << 20).then(|| data(1))))
            .expect_err("the restored record is past the device");
        assert!(matches!(err, crate::Error::InvalidConfig { .. }), "{err}");
    }

    /// A fallback journaled after the record it lost to (a lower version),
    /// past the configured device: refused before any read of it (a crafted
    /// offset near 2^63 was an I/O error of the device, a length near 4 GiB
    /// an allocation that large).
    #[test]
    fn a_fallback_past_the_devices_is_refused_unread() {
        let write = record(10, 2, 8192);
        let crafted = RecordImage {
            version: 6,
            location: Location::new(0, 1 << 63, u32::MAX),
            ..record(6, 1, 0)
        };
        let mut r = in_a_small_table();
        for e in [Entry::Unsynced(write), Entry::Unsynced(crafted)] {
            r.image.apply(&e);
        }
        r.image.records.refused().expect("replay refused nothing");
        let err = r
            .settle_unsynced(|l| {
                assert!(l.end() <= 65_536, "read past the device: {l}");
                Ok(None)
            })
            .expect_err("the fallback is past the device");
        assert!(matches!(err, crate::Error::InvalidConfig { .. }), "{err}");
    }

    /// Two overlapped writes, the first with an unknown outcome (never
    /// committed, its data on the device): the second's data is gone, so the
    /// first's record stands, and its bytes are written back with the redo
    /// (read from a page cache, they may never have reached the disk).
    #[test]
    fn an_earlier_overlapped_record_whose_data_verifies_is_restored_and_written_back() {
        let first = record(6, 1, 0);
        let second = record(10, 1, 4096);
        let mut r = recovered(&[Entry::Unsynced(first), Entry::Unsynced(second)]);
        r.settle_unsynced(|l| Ok((l.offset == 0).then(|| data(1))))
            .unwrap();
        assert_eq!(
            r.image.records.get(1).expect("record").location,
            first.location
        );
        assert_eq!(r.redo, vec![(first.location, Bytes::from(data(1)))]);
        // Neither verifies: the extent had no record before them.
        let mut r = recovered(&[Entry::Unsynced(first), Entry::Unsynced(second)]);
        r.settle_unsynced(|_| Ok(None)).unwrap();
        assert_eq!(r.image.records.get(1).expect("record").state, State::Vacant);
        assert_eq!(r.image.records.get(1).expect("record").generation, 0);
    }

    /// The record restored is not read: a commit's bytes were durable when it
    /// committed, and its location is not freed while a recovery may still
    /// restore it (`Overlaps::carried`). A quarantined record over a sector
    /// that keeps failing (the engine wrote the extent again, and the power
    /// failed before that write's data was durable) comes back as it was,
    /// and the open does not fail on that sector.
    #[test]
    fn a_fallback_is_restored_without_a_read_of_its_bytes() {
        let quarantined = RecordImage {
            state: State::Quarantined,
            ..record(2, 1, 0)
        };
        let write = record(10, 2, 4096);
        let mut r = recovered(&[Entry::Put(quarantined), Entry::Unsynced(write)]);
        r.settle_unsynced(|l| match l.offset {
            0 => Err(crate::Error::io(0, "read", &std::io::Error::other("EIO"))),
            _ => Ok(None),
        })
        .expect("the fallback's sector is never read");
        let back = r.image.records.get(1).expect("record");
        assert_eq!(
            (back.state, back.location, back.version),
            (State::Quarantined, quarantined.location, 10)
        );
        assert_eq!(r.unsynced_dropped, vec![Entry::Put(back)]);
        assert!(r.unverified.is_empty());
    }

    /// A marker journaled after a newer overlapped record still vouches for
    /// the older one.
    #[test]
    fn a_late_marker_vouches_for_the_record_it_names() {
        let first = record(6, 1, 0);
        let second = record(10, 2, 4096);
        let mut r = recovered(&[
            Entry::Unsynced(first),
            Entry::Unsynced(second),
            Entry::Synced {
                extent: ExtentId(1),
                version: 6,
            },
        ]);
        // The device answers nothing: only the marker can keep the first.
        r.settle_unsynced(|_| Ok(None)).unwrap();
        assert_eq!(
            r.image.records.get(1).expect("record").location,
            first.location
        );
        assert!(r.redo.is_empty());
    }
}
