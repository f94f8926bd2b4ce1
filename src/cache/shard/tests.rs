//! Tests of the shard and its eviction rules.

use super::*;
use std::collections::HashMap;

/// Room for `entries` entries, probation for `small` of them, libCacheSim's
/// promotion (a fill and two more reads), a ghost as big as the cache,
/// size-aware as by default (no rule of it applies to entries of one weight).
fn limits(entries: u64, small: u64) -> Limits {
    Limits {
        capacity: entries * 1000,
        small: small * 1000,
        ghost: entries * 1000,
        promote: 3,
        admission: false,
        duel_budget: 0,
        size_aware: true,
        adaptive: false,
        report_evictions: false,
    }
}

/// Fills `id` with an entry weighing `w` bytes, payload tagged with the id.
fn fill_weighing(shard: &mut Shard, id: u64, w: u64, priority: Priority, limits: &Limits) {
    let b = Bytes::from(vec![id as u8; (w - ENTRY_OVERHEAD) as usize]);
    assert_eq!(weight(&b), w);
    shard.insert(ExtentId(id), 1, b, w, priority, limits);
}

/// Fills `id` with an entry of exactly 1 000 bytes.
fn fill(shard: &mut Shard, id: u64, priority: Priority, limits: &Limits) {
    fill_weighing(shard, id, 1000, priority, limits);
}

fn read(shard: &mut Shard, id: u64) -> bool {
    shard
        .touch(ExtentId(id), 1)
        .is_some_and(|b| b[0] == id as u8)
}

fn in_main(shard: &Shard, id: u64) -> Option<bool> {
    match shard.map.get(&ExtentId(id)) {
        Some(CacheEntry::Ready(e)) => Some(e.in_main),
        _ => None,
    }
}

#[test]
fn the_ghost_readmits_to_main_and_promotion_resets_the_read_count() {
    // Defects: no memory of evicted entries (an entry back after leaving
    // probation unread was new again), and promoted entries kept their
    // probation reads (surviving main passes without being read again).
    let l = limits(3, 1);
    let mut s = Shard::default();
    fill(&mut s, 1, Priority::Demand, &l); // A: probation
    assert!(
        read(&mut s, 1) && read(&mut s, 1),
        "A read twice on probation"
    );
    fill(&mut s, 2, Priority::Demand, &l); // B: warm-up, main
    fill(&mut s, 3, Priority::Demand, &l); // C: warm-up, main
    assert_eq!((in_main(&s, 2), in_main(&s, 3)), (Some(true), Some(true)));
    assert!(read(&mut s, 2), "B read once on main");
    fill(&mut s, 4, Priority::Demand, &l); // D: main; C (unread) evicted
    assert_eq!(in_main(&s, 3), None, "C was evicted from main");
    assert_eq!(in_main(&s, 2), Some(true), "B survived its pass: read");
    fill(&mut s, 5, Priority::Demand, &l); // E: probation; A promoted, D evicted
    assert_eq!(in_main(&s, 1), Some(true), "A promoted after three reads");
    assert_eq!(in_main(&s, 4), None);
    fill(&mut s, 6, Priority::Demand, &l); // F: probation; E leaves unread
    assert_eq!(in_main(&s, 5), None, "E evicted from probation");
    assert!(s.ghost.contains(ExtentId(5)), "E's id is in the ghost");
    fill(&mut s, 5, Priority::Demand, &l); // E again: ghost → main; B evicted
    assert_eq!(in_main(&s, 5), Some(true), "a ghost hit enters main");
    assert!(!s.ghost.contains(ExtentId(5)), "and leaves the ghost");
    assert_eq!(in_main(&s, 2), None, "B's one read bought one pass only");
    fill(&mut s, 7, Priority::Demand, &l); // G: probation; F leaves unread
    fill(&mut s, 6, Priority::Demand, &l); // F again: ghost → main
    assert_eq!(in_main(&s, 6), Some(true));
    assert_eq!(
        in_main(&s, 1),
        None,
        "A was not read on main: its probation reads must not keep it"
    );
    assert_eq!(in_main(&s, 5), Some(true), "E is younger on main than A");
    assert!(s.used() <= l.capacity);
}

#[test]
fn frequency_admission_keeps_a_ghost_hit_out_of_main_over_a_hotter_victim() {
    for admission in [false, true] {
        let l = Limits {
            admission,
            ..limits(5, 1)
        };
        let mut s = Shard::default();
        fill(&mut s, 1, Priority::Demand, &l); // A: probation
        for id in 2..=5 {
            fill(&mut s, id, Priority::Demand, &l); // B..E: warm-up, main
        }
        for _ in 0..5 {
            for id in 2..=5 {
                assert!(read(&mut s, id), "B..E are hot");
            }
        }
        fill(&mut s, 6, Priority::Demand, &l); // F: main, evicted at once
        assert_eq!(in_main(&s, 6), None);
        fill(&mut s, 7, Priority::Demand, &l); // G: probation; A leaves unread
        assert_eq!(in_main(&s, 1), None);
        s.remove(ExtentId(7)); // room: A's return evicts nothing
        fill(&mut s, 1, Priority::Demand, &l); // A again: a ghost hit
        // Without admission a ghost hit enters main; with it, A (filled twice,
        // never read) loses to B (read five times) and starts on probation.
        assert_eq!(in_main(&s, 1), Some(!admission), "admission {admission}");
        for id in 2..=5 {
            assert_eq!(in_main(&s, id), Some(true), "the hot entries stay");
        }
    }
}

#[test]
fn a_cache_that_warmed_up_keeps_its_working_set_against_a_scan() {
    // Defect: a cache filled from empty held everything on probation, so the
    // first one-time reads after it filled flushed what it had loaded, FIFO.
    let l = limits(20, 2);
    let mut s = Shard::default();
    for id in 0..20 {
        fill(&mut s, id, Priority::Demand, &l);
    }
    for id in 100..300 {
        fill(&mut s, id, Priority::Demand, &l);
    }
    // The 18 that warm-up put on main stay, less the one the first fill past
    // full evicted (it still counted as warm-up); the 2 on probation go.
    let kept = (0..20).filter(|&id| read(&mut s, id)).count();
    assert!(kept >= 17, "only {kept} of 20 warm entries survived a scan");
    assert!(s.used() <= l.capacity);
}

#[test]
fn a_prefetch_flood_never_evicts_an_entry_read_since_its_fill() {
    let l = limits(10, 1);
    let mut s = Shard::default();
    for id in 0..8 {
        fill(&mut s, id, Priority::Demand, &l);
        assert!(read(&mut s, id));
    }
    for id in 100..160 {
        fill(&mut s, id, Priority::Prefetch, &l);
    }
    for id in 0..8 {
        assert!(read(&mut s, id), "entry {id} displaced by prefetches");
    }
    assert!(s.stats.prefetch_wasted >= 50, "{:?}", s.stats);
    // A demand flood, by contrast, does evict entries read only once on
    // probation: the protection is the prefetch's, not a general one.
    let l = limits(10, 5);
    let mut s = Shard::default();
    for id in 0..5 {
        fill(&mut s, id, Priority::Demand, &l);
        assert!(read(&mut s, id));
    }
    for id in 100..160 {
        fill(&mut s, id, Priority::Demand, &l);
    }
    assert!((0..5).any(|id| in_main(&s, id).is_none()));
}

/// Fills `id` `times` times (removing it in between), so that the sketch
/// counts it that often; it stays on probation, unread since the last fill.
fn popular(shard: &mut Shard, id: u64, times: usize, limits: &Limits) {
    for _ in 0..times {
        shard.remove(ExtentId(id));
        fill(shard, id, Priority::Demand, limits);
    }
}

#[test]
fn the_probation_duel_admits_a_frequent_entry_within_its_budget() {
    // Room for 10, probation 2, duel budget one entry.
    let l = Limits {
        duel_budget: 1000,
        ..limits(10, 2)
    };
    let mut s = Shard::default();
    for id in 1..=11 {
        fill(&mut s, id, Priority::Demand, &l); // 1, 2 probation; 3..=11 main
    }
    assert_eq!(
        in_main(&s, 3),
        None,
        "the first eviction (3) sized the sketch, counting each fill so far once"
    );
    popular(&mut s, 20, 4, &l); // 1 leaves probation: 1 against 1, a tie
    popular(&mut s, 12, 3, &l); // 2 leaves: a tie too
    assert_eq!((in_main(&s, 1), in_main(&s, 2)), (None, None));
    assert_eq!(s.dueled_used, 0, "a tie keeps main");
    popular(&mut s, 13, 2, &l); // 20 leaves: 4 against 1
    assert_eq!(in_main(&s, 20), Some(true), "20 won its duel");
    assert_eq!(s.dueled_used, 1000);
    fill(&mut s, 14, Priority::Demand, &l); // 12 leaves: 3 against 1
    assert_eq!(
        in_main(&s, 12),
        None,
        "the budget (held by 20) keeps 12 out"
    );
    assert!(s.ghost.contains(ExtentId(12)), "the loser is a ghost");
    // A read on main releases the budget; the next entry that wins enters.
    assert!(read(&mut s, 20));
    assert_eq!(s.dueled_used, 0, "released on the first read on main");
    fill(&mut s, 15, Priority::Demand, &l); // 13 leaves: 2 against 1
    assert_eq!(in_main(&s, 13), Some(true), "13 won its duel");
    assert_eq!(s.dueled_used, 1000);
    assert!(s.used() <= l.capacity && s.dueled_used <= l.duel_budget);
}

#[test]
fn the_probation_duel_keeps_main_entries_rated_at_least_as_high() {
    for duel_budget in [0, 10_000] {
        let l = Limits {
            duel_budget,
            ..limits(10, 2)
        };
        let mut s = Shard::default();
        for id in 1..=11 {
            fill(&mut s, id, Priority::Demand, &l); // main: 4..=11
        }
        for id in 4..=11 {
            assert!(read(&mut s, id), "main entries read once");
        }
        // 12 (counted once, unread) against main entries read once: a tie,
        // and a tie keeps main.
        for id in 12..=15 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        assert_eq!(in_main(&s, 12), None, "budget {duel_budget}");
        // A prefetched entry never duels, however often demand filled it.
        popular(&mut s, 40, 5, &l);
        s.remove(ExtentId(40));
        fill(&mut s, 40, Priority::Prefetch, &l);
        for id in 16..=18 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        assert_eq!(in_main(&s, 40), None, "budget {duel_budget}");
        assert_eq!(s.dueled_used, 0);
        assert!((4..=11).all(|id| in_main(&s, id) == Some(true)));
    }
}

#[test]
fn size_awareness_keeps_a_light_unread_entry_but_not_a_light_prefetch() {
    for size_aware in [false, true] {
        let l = Limits {
            size_aware,
            ..limits(10, 2)
        };
        let mut s = Shard::default();
        for id in 1..=6 {
            // 1 on probation, 2..=6 on main (warm-up), which 6 overfills: the
            // first eviction (2, unread) ends warm-up.
            fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
        }
        assert_eq!((in_main(&s, 2), in_main(&s, 3)), (None, Some(true)));
        // 10 weighs 500, at most half the mean (1 812 when it leaves). It
        // pushes 1 (2 000, unread) out of probation, 7 pushes 10 (unread),
        // 8 pushes 7.
        for (id, w) in [(10, 500), (7, 2000), (8, 2000)] {
            fill_weighing(&mut s, id, w, Priority::Demand, &l);
        }
        assert_eq!(in_main(&s, 1), None);
        assert_eq!(in_main(&s, 10), size_aware.then_some(true), "{size_aware}");
        // Size-aware, 10's move to main made 7's fill evict from main (3).
        assert_eq!(in_main(&s, 3), (!size_aware).then_some(true));
        assert_eq!(
            s.ghost.contains(ExtentId(10)),
            !size_aware,
            "dropped to the ghost only when plain"
        );
        // A light prefetch is speculation, not demand: it leaves as usual.
        fill_weighing(&mut s, 11, 500, Priority::Prefetch, &l);
        for id in 12..=14 {
            fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
        }
        assert_eq!(in_main(&s, 11), None, "{size_aware}");
        assert_eq!(s.stats.prefetch_wasted, 1);
        assert!(s.used() <= l.capacity);
    }
}

#[test]
fn the_sketch_counts_fills_made_before_it_and_the_mean_only_demand_fills() {
    let l = limits(10, 2);
    let mut s = Shard::default();
    fill(&mut s, 1, Priority::Prefetch, &l);
    for id in 2..=10 {
        fill(&mut s, id, Priority::Demand, &l);
    }
    assert_eq!(
        (s.fills, s.fill_weight),
        (9, 9000),
        "prefetches stay out of the mean"
    );
    assert!(!s.sketch.is_sized(), "no eviction yet: no sketch");
    fill(&mut s, 11, Priority::Demand, &l); // the first eviction (3, from main)
    assert_eq!(in_main(&s, 3), None);
    assert!(s.sketch.is_sized());
    for id in 2..=11 {
        assert!(s.sketch.estimate(ExtentId(id)) >= 1, "demand fill {id}");
    }
    assert_eq!(
        s.sketch.estimate(ExtentId(1)),
        0,
        "a prefetch is not counted"
    );
}

#[test]
fn size_awareness_makes_a_heavy_ghost_hit_earn_main() {
    for size_aware in [false, true] {
        let l = Limits {
            size_aware,
            ..limits(10, 2)
        };
        let mut s = Shard::default();
        for id in 1..=5 {
            // 1 on probation, 2..=5 on main (warm-up).
            fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
        }
        for _ in 0..5 {
            for id in 2..=5 {
                assert!(read(&mut s, id), "2..=5 are hot");
            }
        }
        // 6 (warm-up, main) is evicted at once; then 7 pushes 1 (unread) out
        // of probation and 9 pushes 7: both ids go to the ghost.
        for id in 6..=9 {
            fill_weighing(&mut s, id, 1000, Priority::Demand, &l);
        }
        assert_eq!((in_main(&s, 1), in_main(&s, 7)), (None, None));
        s.remove(ExtentId(8));
        s.remove(ExtentId(9)); // room: the returns below evict nothing
        // 7 again: a ghost hit under the mean (1 500) enters main either way.
        fill_weighing(&mut s, 7, 1000, Priority::Demand, &l);
        assert_eq!(in_main(&s, 7), Some(true), "{size_aware}");
        s.remove(ExtentId(7));
        // 1 again: a ghost hit heavier than the mean (1 545). Size-aware, it
        // must beat main's next victim (2, read five times) and does not.
        fill_weighing(&mut s, 1, 2000, Priority::Demand, &l);
        assert_eq!(in_main(&s, 1), Some(!size_aware), "{size_aware}");
        assert!((2..=5).all(|id| in_main(&s, id) == Some(true)));
        // 20, as heavy but filled seven times, leaves probation unread and
        // returns: rated above 2, it enters main either way.
        s.remove(ExtentId(1));
        for _ in 0..7 {
            s.remove(ExtentId(20));
            fill_weighing(&mut s, 20, 2000, Priority::Demand, &l);
        }
        for id in 21..=23 {
            fill_weighing(&mut s, id, 1000, Priority::Demand, &l);
        }
        assert_eq!(in_main(&s, 20), None, "20 left probation unread");
        for id in 21..=23 {
            s.remove(ExtentId(id));
        }
        fill_weighing(&mut s, 20, 2000, Priority::Demand, &l);
        assert_eq!(in_main(&s, 20), Some(true), "{size_aware}");
        assert!(s.used() <= l.capacity);
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Fill {
            id: u64,
            size: usize,
            prefetch: bool,
        },
        Read {
            id: u64,
        },
        Remove {
            id: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..48, 1usize..3000, any::<bool>())
                .prop_map(|(id, size, prefetch)| Op::Fill { id, size, prefetch }),
            4 => (0u64..48).prop_map(|id| Op::Read { id }),
            1 => (0u64..48).prop_map(|id| Op::Remove { id }),
        ]
    }

    /// Bytes that name their extent and generation.
    fn tagged(id: u64, generation: u64, size: usize) -> Bytes {
        let mut v = vec![0u8; size.max(16)];
        v[..8].copy_from_slice(&id.to_le_bytes());
        v[8..16].copy_from_slice(&generation.to_le_bytes());
        Bytes::from(v)
    }

    /// The shard's books agree with its map, and every bound holds.
    fn check(s: &Shard, l: &Limits) {
        let ready = || {
            s.map.values().filter_map(|slot| match slot {
                CacheEntry::Ready(e) => Some(e),
                CacheEntry::Loading { .. } | CacheEntry::Prefetching { .. } => None,
            })
        };
        let sum = |f: fn(&Entry) -> bool| ready().filter(|e| f(e)).map(|e| e.weight()).sum();
        assert_eq!(s.used, sum(|_| true));
        assert_eq!(s.main_used, sum(|e| e.in_main));
        assert_eq!(s.dueled_used, sum(|e| e.dueled()));
        assert!(ready().all(|e| !e.dueled() || e.in_main), "dueled off main");
        assert!(s.used <= l.capacity, "{} > {}", s.used, l.capacity);
        assert!(s.dueled_used <= l.duel_budget, "duel budget exceeded");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Under every policy option: the books balance after each step, a
        /// read serves only the generation last filled, and never bytes of
        /// another extent or generation.
        #[test]
        fn books_balance_and_reads_serve_the_last_fill(
            small in 1u64..6,
            duel in prop_oneof![Just(0u64), 1u64..8],
            admission in any::<bool>(),
            size_aware in any::<bool>(),
            adaptive in any::<bool>(),
            promote in 2u8..=3,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let l = Limits {
                admission,
                size_aware,
                adaptive,
                promote,
                duel_budget: duel * 1000,
                ..limits(12, small)
            };
            let mut s = Shard::default();
            let mut generation = 0u64;
            let mut latest: HashMap<u64, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Fill { id, size, prefetch } => {
                        generation += 1;
                        let b = tagged(id, generation, size);
                        let w = weight(&b);
                        let p = if prefetch { Priority::Prefetch } else { Priority::Demand };
                        s.insert(ExtentId(id), generation, b, w, p, &l);
                        latest.insert(id, generation);
                    }
                    Op::Read { id } => {
                        let Some(&g) = latest.get(&id) else { continue };
                        prop_assert!(s.touch(ExtentId(id), g - 1).is_none(), "an older generation");
                        if let Some(b) = s.touch(ExtentId(id), g) {
                            prop_assert_eq!(&b[..8], &id.to_le_bytes()[..]);
                            prop_assert_eq!(&b[8..16], &g.to_le_bytes()[..]);
                        }
                    }
                    Op::Remove { id } => {
                        s.remove(ExtentId(id));
                        latest.remove(&id);
                    }
                }
                check(&s, &l);
            }
        }

        /// With entries of one weight the size-aware rules never apply: every
        /// decision, hence every resident entry and counter, equals plain
        /// S3-FIFO's after every step.
        #[test]
        fn with_one_weight_size_awareness_changes_nothing(
            small in 1u64..6,
            admission in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let plain = Limits { admission, size_aware: false, ..limits(12, small) };
            let sized = Limits { size_aware: true, ..plain };
            let (mut a, mut b) = (Shard::default(), Shard::default());
            let mut generation = 0u64;
            let resident = |s: &Shard| {
                let mut v: Vec<_> = s.map.iter().filter_map(|(id, slot)| match slot {
                    CacheEntry::Ready(e) => Some((id.0, e.generation, e.in_main, e.freq())),
                    CacheEntry::Loading { .. } | CacheEntry::Prefetching { .. } => None,
                }).collect();
                v.sort_unstable();
                v
            };
            for op in ops {
                match op {
                    Op::Fill { id, prefetch, .. } => {
                        generation += 1;
                        let p = if prefetch { Priority::Prefetch } else { Priority::Demand };
                        for (s, l) in [(&mut a, &plain), (&mut b, &sized)] {
                            let v = tagged(id, generation, 900);
                            let w = weight(&v);
                            s.insert(ExtentId(id), generation, v, w, p, l);
                        }
                    }
                    Op::Read { id } => {
                        let g = generation;
                        let (x, y) = (a.touch(ExtentId(id), g), b.touch(ExtentId(id), g));
                        prop_assert_eq!(x.is_some(), y.is_some());
                    }
                    Op::Remove { id } => {
                        a.remove(ExtentId(id));
                        b.remove(ExtentId(id));
                    }
                }
                prop_assert_eq!(resident(&a), resident(&b));
                prop_assert_eq!(a.stats, b.stats);
                prop_assert_eq!((a.used, a.main_used), (b.used, b.main_used));
            }
        }
    }
}

/// A map slot, key included, is half a cache line: a hit reads one line of it.
#[test]
fn a_slot_is_half_a_cache_line() {
    assert_eq!(std::mem::size_of::<(ExtentId, CacheEntry)>(), 32);
}

/// The packed weight keeps all 40 bits; a heavier fill is counted oversized and
/// not kept, as one heavier than the shard is.
#[test]
fn weights_up_to_forty_bits_are_kept_exactly() {
    let mut l = limits(1, 0);
    l.capacity = 1 << 42;
    l.ghost = 0;
    let mut shard = Shard::default();
    let bytes = |id: u64| Bytes::from(vec![id as u8; 16]);
    shard.insert(ExtentId(7), 3, bytes(7), MAX_WEIGHT, Priority::Demand, &l);
    assert_eq!(shard.used(), MAX_WEIGHT);
    assert!(shard.touch(ExtentId(7), 3).is_some_and(|b| b[0] == 7));
    shard.insert(
        ExtentId(8),
        4,
        bytes(8),
        MAX_WEIGHT + 1,
        Priority::Demand,
        &l,
    );
    assert!(shard.touch(ExtentId(8), 4).is_none());
    assert_eq!(shard.stats.oversized, 1);
    assert_eq!(shard.used(), MAX_WEIGHT);
    shard.remove(ExtentId(7));
    assert_eq!(shard.used(), 0);
}
