//! Recovery's decision on the records of overlapped writes (`Entry::Unsynced`,
//! see "Overlapped data syncs" in `journal`), and the inline data to write back
//! once the records that stand are known.

use super::{Entry, Location, RecordImage, Recovered};

impl Recovered {
    /// Decides every record journaled while its data's sync ran
    /// ([`Entry::Unsynced`]) that is still current and no [`Entry::Synced`]
    /// covered: `read` returns the bytes at a location as the device shows them
    /// (`None` past its end); a record whose data verifies against its checksum
    /// stays; one whose data does not was never acknowledged, unless a fault
    /// damaged its data within one group commit of its acknowledgment, and its
    /// extent gets back the record it replaced, unless another record references
    /// that record's location now (then the write had committed: the record
    /// stays and the fault is the verifier's to report). Then chooses the inline data to write back
    /// ([`redo`](Self::redo)) for the records that now stand.
    ///
    /// # Errors
    ///
    /// `read`'s: a device that cannot be read is not taken for one that holds no
    /// data (the open fails and changes nothing).
    pub(crate) fn settle_unsynced(
        &mut self,
        mut read: impl FnMut(Location) -> crate::Result<Option<Vec<u8>>>,
    ) -> crate::Result<()> {
        // Whether the device holds `r`'s bytes (its checksum verifies).
        fn holds(
            read: &mut impl FnMut(Location) -> crate::Result<Option<Vec<u8>>>,
            r: &RecordImage,
        ) -> crate::Result<bool> {
            let len = r.location.length as usize;
            Ok(read(r.location)?.is_some_and(|d| {
                d.len() >= len
                    && crate::record::checksum(r.extent, r.generation, &d[..len]) == r.checksum
            }))
        }
        let image = &mut self.image;
        for (id, chain) in std::mem::take(&mut image.unsynced) {
            let Some(r) = image.records.get(&id).copied() else {
                continue;
            };
            if r.references() && holds(&mut read, &r)? {
                self.unsynced_kept.push(Entry::Synced {
                    extent: r.extent,
                    version: r.version,
                });
                continue;
            }
            // The newest record to fall back to: one of the replaced
            // overlapped writes whose data verifies (its outcome was unknown),
            // else the record before them all.
            let mut back = None;
            for (i, candidate) in chain.iter().enumerate().rev() {
                match candidate {
                    Some(c) if i > 0 && !(c.references() && holds(&mut read, c)?) => continue,
                    _ => {
                        back = Some(*candidate);
                        break;
                    }
                }
            }
            let first = chain.get(1).copied().flatten().unwrap_or(r);
            let back = match back.flatten() {
                Some(old) => RecordImage {
                    version: r.version,
                    ..old
                },
                None => RecordImage {
                    extent: r.extent,
                    version: r.version,
                    state: crate::record::State::Vacant,
                    generation: first.generation.saturating_sub(1),
                    location: Location::default(),
                    checksum: 0,
                    tag: crate::record::Tag::EMPTY,
                },
            };
            // It can be restored only if no other record took its location:
            // while the write was not acknowledged, that record stayed current
            // and its location its own. If another record references it now,
            // the write committed, the old location was reused, and its own
            // data was durable before a fault damaged it: the verifier must
            // find and report that, not recovery hide it.
            let taken = back.references()
                && (image.records.values()).any(|o| {
                    o.extent != back.extent
                        && o.references()
                        && o.location.device == back.location.device
                        && o.location.offset < back.location.end()
                        && back.location.offset < o.location.end()
                });
            if taken {
                self.unsynced_kept.push(Entry::Synced {
                    extent: r.extent,
                    version: r.version,
                });
                continue;
            }
            // Committed (the dropped proposal was made on top of a commit) at
            // the dropped one's version: the next write then proposes a version
            // no journal holds yet, and this commit wins over the dropped
            // proposal at their equal version in every later recovery, once the
            // reopen has journaled it.
            image.records.insert(id, back);
            image.proposed.remove(&id);
            self.unsynced_dropped.push(Entry::Put(back));
        }
        self.choose_redo();
        Ok(())
    }

    /// The inline data whose record the image still names (see
    /// [`redo`](Self::redo)). The recovered record must still name these bytes:
    /// same location, generation and checksum, durable or quarantined (a
    /// quarantine keeps the record and its location: the last good copy,
    /// invariant 8, may be exactly these bytes; the crash sweep found a
    /// quarantine after transient errors that left them only in the journal).
    pub(super) fn choose_redo(&mut self) {
        let records = &self.image.records;
        self.redo = (self.inline.iter())
            .filter(|(r, _)| {
                records.get(&r.extent.0).is_some_and(|f| {
                    f.references()
                        && (f.location, f.generation, f.checksum)
                            == (r.location, r.generation, r.checksum)
                })
            })
            .map(|(r, data)| (r.location, data.clone()))
            .collect();
    }
}
