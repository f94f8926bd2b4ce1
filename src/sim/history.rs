//! The model history the checker compares every read against, and the values the
//! workload writes: each value encodes its extent and generation, so a stale or
//! misplaced value can never pass for a fresh one.

use crate::bytes::Bytes;
use crate::record::{ExtentId, Tag};

/// The bytes the workload writes as `generation` of `extent`: a 16-byte header
/// (extent, generation) and a filler derived from both.
pub fn value(extent: ExtentId, generation: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&extent.0.to_le_bytes());
    v.extend_from_slice(&generation.to_le_bytes());
    let mut x = extent.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ generation.rotate_left(17) ^ 0xA5A5;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes()[..(len - v.len()).min(8)]);
    }
    Bytes::from(v)
}

/// The tag the workload writes with `generation` of `extent`: the same 16
/// bytes as the value's header, so a tag that strayed to another extent or
/// generation is caught as a stale value is.
pub(crate) fn tag(extent: ExtentId, generation: u64) -> Tag {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&extent.0.to_le_bytes());
    t[8..].copy_from_slice(&generation.to_le_bytes());
    Tag::new(&t).unwrap_or(Tag::EMPTY)
}

/// The (extent, generation) a value claims, if its whole payload matches.
pub fn decode(bytes: &[u8]) -> Option<(ExtentId, u64)> {
    if bytes.len() < 16 {
        return None;
    }
    let extent = ExtentId(u64::from_le_bytes(bytes[..8].try_into().ok()?));
    let generation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    (*value(extent, generation, bytes.len()) == *bytes).then_some((extent, generation))
}

/// How a read's bytes compare with the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadCheck {
    /// A generation current at some instant inside the read.
    Fresh,
    /// A real generation of this extent, but not current at any instant inside the
    /// read.
    Stale { got: u64 },
    /// Bytes of another extent, or not a value at all.
    Corrupt,
}

#[derive(Debug, Clone, Copy)]
struct Commit {
    generation: u64,
    at_ns: u64,
    /// A delete: from `at_ns` on the extent holds no value (its generation
    /// kept, as the record keeps it).
    vacant: bool,
}

/// Every commit of every extent, in order.
#[derive(Debug)]
pub(crate) struct History {
    commits: Vec<Vec<Commit>>,
}

impl History {
    pub(crate) fn new(extents: u32) -> Self {
        History {
            commits: vec![Vec::new(); extents as usize],
        }
    }

    /// Records that `generation` of `extent` became current at `at_ns`. A
    /// generation at or below the current one was recorded already: a write's
    /// commit is recorded when it is journaled (visible from then on), and its
    /// acknowledgment, which records it again, may come after a later write's
    /// commit.
    pub(crate) fn commit(&mut self, extent: ExtentId, generation: u64, at_ns: u64) {
        if let Some(c) = self.commits.get_mut(extent.0 as usize)
            && c.last().is_none_or(|l| l.generation < generation)
        {
            c.push(Commit {
                generation,
                at_ns,
                vacant: false,
            });
        }
    }

    /// Records that a delete left `extent` vacant at `generation` at `at_ns`
    /// (once: the generation's value was current until then).
    pub(crate) fn delete(&mut self, extent: ExtentId, generation: u64, at_ns: u64) {
        // Only over the current value: a delete of another generation would
        // make `current` go back (the checker's record check reports that).
        if let Some(c) = self.commits.get_mut(extent.0 as usize)
            && c.last()
                .is_some_and(|l| l.generation == generation && !l.vacant)
        {
            c.push(Commit {
                generation,
                at_ns,
                vacant: true,
            });
        }
    }

    /// After a crash: `extent` is at `generation` (`vacant` if deleted) from
    /// `now_ns` on. Later commits are gone, a delete too if the recovered
    /// record holds the value; a generation no read could see before (a write
    /// or delete whose outcome was unknown, recovered from its journal record)
    /// is committed now.
    pub(crate) fn rewind(&mut self, extent: ExtentId, generation: u64, vacant: bool, now_ns: u64) {
        if let Some(c) = self.commits.get_mut(extent.0 as usize) {
            c.retain(|c| {
                c.generation < generation || (c.generation == generation && (vacant || !c.vacant))
            });
            if c.last()
                .is_none_or(|c| c.generation < generation || c.vacant != vacant)
            {
                c.push(Commit {
                    generation,
                    at_ns: now_ns,
                    vacant,
                });
            }
        }
    }

    /// Whether `extent` held no value at some instant of `[start_ns, end_ns]`:
    /// nothing committed before `end_ns`, or a delete current then.
    pub(crate) fn vacant_within(&self, extent: ExtentId, start_ns: u64, end_ns: u64) -> bool {
        let Some(commits) = self.commits.get(extent.0 as usize) else {
            return true;
        };
        if commits.first().is_none_or(|c| c.at_ns > end_ns) {
            return true;
        }
        (commits.iter().enumerate()).any(|(i, c)| {
            let until = commits.get(i + 1).map(|n| n.at_ns);
            c.vacant && c.at_ns <= end_ns && until.is_none_or(|u| u >= start_ns)
        })
    }

    /// The last committed generation of `extent` (0 if none).
    pub(crate) fn current(&self, extent: ExtentId) -> u64 {
        self.commits
            .get(extent.0 as usize)
            .and_then(|c| c.last())
            .map_or(0, |c| c.generation)
    }

    /// Checks bytes returned by a read of `extent` that ran from `start_ns` to
    /// `end_ns`.
    pub(crate) fn check_read(
        &self,
        extent: ExtentId,
        bytes: &[u8],
        start_ns: u64,
        end_ns: u64,
    ) -> ReadCheck {
        let Some((id, generation)) = decode(bytes) else {
            return ReadCheck::Corrupt;
        };
        if id != extent {
            return ReadCheck::Corrupt;
        }
        let Some(commits) = self.commits.get(extent.0 as usize) else {
            return ReadCheck::Corrupt;
        };
        let Some(pos) = (commits.iter()).position(|c| c.generation == generation && !c.vacant)
        else {
            return ReadCheck::Corrupt;
        };
        let became_current = commits[pos].at_ns;
        let superseded = commits.get(pos + 1).map(|c| c.at_ns);
        if became_current <= end_ns && superseded.is_none_or(|s| s >= start_ns) {
            ReadCheck::Fresh
        } else {
            ReadCheck::Stale { got: generation }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_encode_extent_and_generation() {
        let v = value(ExtentId(3), 7, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(decode(&v), Some((ExtentId(3), 7)));
        let mut w = v.to_vec();
        w[60] ^= 1;
        assert_eq!(decode(&w), None, "a flipped bit is not a value");
        assert_ne!(value(ExtentId(3), 8, 100), v);
    }

    #[test]
    fn a_read_is_fresh_only_if_its_generation_was_current_inside_it() {
        let mut h = History::new(4);
        let e = ExtentId(1);
        h.commit(e, 1, 100);
        h.commit(e, 2, 200);
        let g1 = value(e, 1, 32);
        assert_eq!(h.check_read(e, &g1, 150, 250), ReadCheck::Fresh);
        assert_eq!(h.check_read(e, &g1, 201, 300), ReadCheck::Stale { got: 1 });
        assert_eq!(h.check_read(ExtentId(2), &g1, 0, 300), ReadCheck::Corrupt);
    }

    /// A deleted extent's value is current until its delete; a crash that
    /// takes the delete back makes it current again, one that keeps it does
    /// not.
    #[test]
    fn a_deleted_value_is_stale_after_its_delete_unless_a_crash_took_it_back() {
        let mut h = History::new(2);
        let e = ExtentId(1);
        let g1 = value(e, 1, 32);
        h.commit(e, 1, 100);
        h.delete(e, 1, 200);
        assert_eq!(h.check_read(e, &g1, 150, 199), ReadCheck::Fresh);
        assert_eq!(h.check_read(e, &g1, 250, 300), ReadCheck::Stale { got: 1 });
        assert_eq!(h.current(e), 1, "the generation is kept");
        // Vacant before the first write and while the delete stands.
        assert!(h.vacant_within(e, 0, 99) && h.vacant_within(e, 150, 250));
        assert!(!h.vacant_within(e, 120, 190));
        assert!(h.vacant_within(ExtentId(0), 0, 700), "never written");
        h.rewind(e, 1, true, 400);
        assert_eq!(h.check_read(e, &g1, 450, 500), ReadCheck::Stale { got: 1 });
        h.rewind(e, 1, false, 600);
        assert_eq!(h.check_read(e, &g1, 650, 700), ReadCheck::Fresh);
        assert!(
            !h.vacant_within(e, 650, 700),
            "the crash took the delete back"
        );
    }
}
