//! A bitmap reference model of the allocator's free map, and the test that checks
//! the allocator against it.

use super::tests::{B, loc};
use super::*;

/// The reference: one flag per block, first fit by linear scan.
struct Reference {
    used: Vec<bool>,
    bad: Vec<bool>,
    bump: u64,
}

impl Reference {
    /// Maximal free runs below the bump pointer: (start, length) in blocks.
    fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut b = 0;
        while b < self.bump {
            let start = b;
            while b < self.bump && !self.used[b as usize] && !self.bad[b as usize] {
                b += 1;
            }
            if b > start {
                runs.push((start, b - start));
            }
            b += 1;
        }
        runs
    }

    /// Best fit, else the bump pointer; or, packing below block `below`, the
    /// lowest hole that fits if it starts below it, else nothing.
    fn allocate(&mut self, blocks: u64, below: Option<u64>) -> Option<u64> {
        let mut fits = self.runs().into_iter().filter(|&(_, len)| len >= blocks);
        let hole = match below {
            Some(limit) => Some(fits.next().map(|(s, _)| s).filter(|&s| s < limit)?),
            None => fits.min_by_key(|&(s, len)| (len, s)).map(|(s, _)| s),
        };
        let start = match hole {
            Some(s) => s,
            None if self.bump + blocks <= self.used.len() as u64 => {
                self.bump += blocks;
                self.bump - blocks
            }
            None => return None,
        };
        (start..start + blocks).for_each(|b| self.used[b as usize] = true);
        Some(start)
    }

    fn lower_bump(&mut self) {
        while self.bump > 0
            && !self.used[self.bump as usize - 1]
            && !self.bad[self.bump as usize - 1]
        {
            self.bump -= 1;
        }
    }
}

/// Invariant: the free map agrees block for block with a bitmap reference under
/// random allocate / free / mark-bad (same best-fit and packing offsets, same live, free and
/// bad bytes, same bump pointer), and never hands out a used or bad block.
#[test]
fn the_free_map_matches_a_bitmap_reference() {
    let blocks = 256u64;
    for seed in 1..=20u64 {
        let a = Allocator::new(1, blocks * B, 4096);
        let mut r = Reference {
            used: vec![false; blocks as usize],
            bad: vec![false; blocks as usize],
            bump: 0,
        };
        let mut live: Vec<Location> = Vec::new();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..2000 {
            let roll = next() % 10;
            if roll < 5 {
                let n = 1 + next() % 8;
                let below = (next() % 2 == 0).then(|| next() % (blocks + 1));
                let placement = match below {
                    Some(limit) => Placement::PackBelow(loc(0, limit, 1)),
                    None => Placement::Any,
                };
                let got = a.allocate((n * B) as u32 - (next() % 100) as u32, placement);
                let want = r.allocate(n, below);
                assert_eq!(
                    got.as_ref().ok().map(|l| l.offset / B),
                    want,
                    "seed {seed} step {step}"
                );
                if let Ok(l) = got {
                    live.push(l);
                }
            } else if roll < 9 && !live.is_empty() {
                let l = live.swap_remove((next() % live.len() as u64) as usize);
                a.free(l);
                let (s, e) = (l.offset / B, l.end().div_ceil(B));
                (s..e).for_each(|b| r.used[b as usize] = false);
                r.lower_bump();
            } else if !live.is_empty() {
                // A fault in one block of a live location.
                let l = live[(next() % live.len() as u64) as usize];
                let b = l.offset / B + next() % (l.end().div_ceil(B) - l.offset / B);
                a.mark_bad(loc(0, b, 1));
                r.bad[b as usize] = true;
            }
            let s = a.stats(0).unwrap();
            let count = |f: &dyn Fn(usize) -> bool| {
                (0..r.bump as usize).filter(|&b| f(b)).count() as u64 * B
            };
            assert_eq!(s.file_bytes, r.bump * B, "seed {seed} step {step}");
            assert_eq!(s.bad_bytes, count(&|b| r.bad[b]));
            assert_eq!(s.live_bytes, count(&|b| r.used[b] && !r.bad[b]));
            assert_eq!(s.free_bytes, count(&|b| !r.used[b] && !r.bad[b]));
        }
        a.check();
        // Recovery's view: the complement of the live and bad locations is the
        // same allocator (same statistics, same next locations).
        let b = Allocator::restore(1, blocks * B, 4096, live.clone(), a.bad_locations(), [])
            .expect("consistent");
        b.check();
        assert_eq!(
            a.stats(0),
            b.stats(0),
            "seed {seed}: restore is the complement"
        );
        for n in 1..=8u32 {
            let placement = if n % 2 == 0 {
                Placement::PackBelow(loc(0, blocks, 1))
            } else {
                Placement::Any
            };
            assert_eq!(
                a.allocate(n * 4096, placement).ok(),
                b.allocate(n * 4096, placement).ok()
            );
        }
    }
}
