//! The simulated storage fabric: volatile and durable storage under a fault overlay,
//! a replica source, and a per-device latency model with jitter, a heavy tail and
//! bursts.
//!
//! # Durability
//!
//! A completed write is *volatile*: reads see it at once (as they would see an OS
//! page cache or a drive's write cache), but it survives nothing until a sync
//! of its device that began after it completed completes. A sync that completes
//! makes every write of its device completed before it began durable (as
//! `fdatasync` promises: a write that completed while it ran may or may not be
//! written back, and here is not); a sync can fail with an injected transient
//! error, and then makes nothing durable. The checker's "nothing lost" invariant looks only at
//! durable bytes ([`Fabric::durable`]), so a write that commits before its sync is
//! acknowledged is caught.

use super::config::{Faults, Latency};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::record::{ExtentId, Location};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

/// A persistent fault at one location: stays put across retries until the location
/// is written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Reads return the stored bytes with `mask` xored at `index`.
    BitFlip { index: usize, mask: u8 },
    /// Reads return these bytes (a misdirected write landed here, or the intended
    /// write never did).
    Shows(Bytes),
}

/// How much longer than a good sync one whose writeback fails takes, drawn
/// evenly from this range (see [`Fabric::begin_sync`]).
pub(crate) const FAILING_SYNC_NS: std::ops::Range<u64> = 2_000_000..20_000_000;

/// A cut of a device file no sync has made final (see `Fabric::untrimmed`):
/// the device, the cut's number, and the durable bytes it took, by (device,
/// offset).
type Cut = (u16, u64, Vec<((u16, u64), Bytes)>);

/// The fabric.
#[derive(Debug)]
pub(crate) struct Fabric {
    /// What a completed sync made durable, by (device, offset).
    durable: HashMap<(u16, u64), Bytes>,
    /// Completed writes no sync of their device has made durable yet, by (device,
    /// offset): ordered so that a sync finds its device's writes as one range.
    volatile: BTreeMap<(u16, u64), Bytes>,
    /// Every write of each volatile location no sync covered yet, numbered
    /// (see [`sync_ticket`](Fabric::sync_ticket)), oldest first, the last one
    /// the bytes in `volatile`: a sync that began between two of them makes
    /// the earlier one durable. A location without any counts as written
    /// before every sync.
    written: HashMap<(u16, u64), Vec<(u64, Bytes)>>,
    /// Writes made volatile so far.
    writes: u64,
    /// Writes whose pages a failed sync marked clean without writing them (ext4
    /// may): reads still see them, no later sync persists them, a power cut
    /// loses them; writing the same location again makes them dirty again.
    clean: BTreeMap<(u16, u64), Bytes>,
    /// Persistent faults, by (device, offset); they apply to reads.
    faults: HashMap<(u16, u64), Fault>,
    /// A good copy of every committed (extent, generation).
    replicas: HashMap<(ExtentId, u64), Bytes>,
    burst_left: Vec<u32>,
    latency: Latency,
    faults_cfg: Faults,
    pub(crate) persistent_injected: u32,
    /// Writes whose pages a failed sync dropped.
    pub(crate) dropped_pages: u64,
    pub(crate) rng: ChaCha8Rng,
    /// Sync failures draw from their own stream, so that modelling them moved no
    /// other random choice of a seed (replay commands stay meaningful).
    sync_rng: ChaCha8Rng,
    /// Devices whose writeback failed, the error not yet reported to a sync.
    writeback_failed: std::collections::BTreeSet<u16>,
    /// The cuts of device files ([`trim`](Fabric::trim)) no sync that began
    /// after them has made final, oldest first: the device, the cut's number
    /// (counted with the writes, see [`sync_ticket`](Fabric::sync_ticket)),
    /// and the durable bytes it took. A power cut may undo each (a truncate's
    /// new size is metadata the next `fdatasync` writes).
    untrimmed: Vec<Cut>,
}

/// A copy of `bytes` for a device or the replica source to keep, as a disk's
/// sectors and another machine's replica are: never the writer's own buffer,
/// whose last handle the store lets go when the write returns (an inline
/// write's rewrite then reads its bytes back from the journal, and the emulator
/// must reach that path as the store does).
pub(super) fn own_copy(bytes: &Bytes) -> Bytes {
    Bytes::from(bytes.as_slice())
}

/// Bytes a device writes atomically.
const SECTOR: usize = 512;

fn key(l: Location) -> (u16, u64) {
    (l.device, l.offset)
}

/// The error an injected transient fault returns.
fn injected(device: u16, op: &'static str) -> Error {
    Error::Io {
        device,
        op,
        kind: std::io::ErrorKind::Other,
        message: "injected transient error".into(),
    }
}

impl Fabric {
    pub(crate) fn new(
        devices: u16,
        latency: Latency,
        faults: Faults,
        rng: ChaCha8Rng,
        sync_rng: ChaCha8Rng,
    ) -> Self {
        Fabric {
            durable: HashMap::new(),
            volatile: BTreeMap::new(),
            written: HashMap::new(),
            writes: 0,
            clean: BTreeMap::new(),
            faults: HashMap::new(),
            replicas: HashMap::new(),
            burst_left: vec![0; usize::from(devices.max(1))],
            latency,
            faults_cfg: faults,
            persistent_injected: 0,
            dropped_pages: 0,
            rng,
            sync_rng,
            writeback_failed: Default::default(),
            untrimmed: Vec::new(),
        }
    }

    /// Service time of one I/O on `device`, ns.
    pub(crate) fn service_ns(&mut self, device: u16) -> u64 {
        let l = self.latency;
        let jitter = if l.jitter_ns > 0 {
            self.rng.random_range(0..l.jitter_ns)
        } else {
            0
        };
        // Pareto(α = 1.5) tail above the floor, capped at 100× its scale.
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let tail =
            ((l.tail_ns as f64) * (u.powf(-1.0 / 1.5) - 1.0)).min(l.tail_ns as f64 * 100.0) as u64;
        let mut ns = l.floor_ns + jitter + tail;
        let n = self.burst_left.len();
        let left = &mut self.burst_left[usize::from(device) % n];
        if *left > 0 {
            *left -= 1;
            ns *= u64::from(l.burst_factor.max(1));
        } else if self.rng.random_range(0..1_000_000) < l.burst_ppm {
            *left = l.burst_ios;
        }
        ns
    }

    /// Extra delay of a write acknowledgment, ns.
    pub(crate) fn ack_delay_ns(&mut self) -> u64 {
        match self.latency.ack_delay_ns {
            0 => 0,
            max => self.rng.random_range(0..max),
        }
    }

    fn transient(&mut self) -> bool {
        self.rng.random_range(0..1_000_000) < self.faults_cfg.transient_ppm
    }

    /// The bytes a read of `location` returns now, and whether its failure (if it
    /// failed) was an injected transient error.
    pub(crate) fn read(&mut self, location: Location) -> (Result<Bytes, Error>, bool) {
        if self.transient() {
            return (Err(injected(location.device, "read")), true);
        }
        (self.media(location), false)
    }

    /// The bytes stored at `location` as reads see them: the last completed write,
    /// durable or not, before faults.
    fn stored(&self, location: Location) -> Option<&Bytes> {
        let k = key(location);
        (self.volatile.get(&k))
            .or_else(|| self.clean.get(&k))
            .or_else(|| self.durable.get(&k))
    }

    /// What the medium shows at `location` (faults applied), without injection.
    pub(crate) fn media(&self, location: Location) -> Result<Bytes, Error> {
        let want = location.length as usize;
        let short = |actual: usize| Error::ShortRead {
            location,
            actual: actual as u64,
        };
        let base = match self.faults.get(&key(location)) {
            Some(Fault::Shows(bytes)) => bytes.clone(),
            Some(Fault::BitFlip { index, mask }) => {
                let stored = self.stored(location).ok_or_else(|| short(0))?;
                let mut v = stored.to_vec();
                if let Some(b) = v.get_mut(*index) {
                    *b ^= mask;
                }
                Bytes::from(v)
            }
            None => self.stored(location).cloned().ok_or_else(|| short(0))?,
        };
        if base.len() < want {
            return Err(short(base.len()));
        }
        Ok(if base.len() == want {
            base
        } else {
            Bytes::from(&base[..want])
        })
    }

    /// The durable bytes at `location` (what a completed sync made survive, faults
    /// not applied), for the checker.
    pub(crate) fn durable(&self, location: Location) -> Option<&Bytes> {
        self.durable.get(&key(location))
    }

    /// Each device's length as its file would show it: the end of the last byte
    /// ever written there (durable, or in the page cache after a process kill),
    /// `None` if nothing was.
    pub(crate) fn device_lens(&self, devices: u16) -> Vec<Option<u64>> {
        let mut lens = vec![None; usize::from(devices)];
        for ((device, offset), bytes) in (self.durable.iter())
            .chain(&self.volatile)
            .chain(&self.clean)
        {
            if let Some(len) = lens.get_mut(usize::from(*device)) {
                let end = offset + bytes.len() as u64;
                *len = Some(len.map_or(end, |l: u64| l.max(end)));
            }
        }
        lens
    }

    /// The bytes written at `location` that no sync has made durable yet.
    pub(crate) fn volatile(&self, location: Location) -> Option<&Bytes> {
        self.volatile.get(&key(location))
    }

    /// Applies a completed write (volatile until a sync of its device completes);
    /// `Err` if an injected transient error failed it. A write clears the
    /// location's persistent fault.
    pub(crate) fn write(&mut self, location: Location, bytes: Bytes) -> Result<(), Error> {
        if self.transient() {
            return Err(injected(location.device, "write"));
        }
        if self.rng.random_range(0..1_000_000) < self.faults_cfg.disk_full_ppm {
            return Err(Error::DiskFull {
                device: location.device,
                op: "write",
            });
        }
        self.faults.remove(&key(location));
        self.clean.remove(&key(location));
        self.dirty(key(location), own_copy(&bytes));
        Ok(())
    }

    /// `bytes` are written at `k`: volatile, numbered for the syncs.
    fn dirty(&mut self, k: (u16, u64), bytes: Bytes) {
        self.writes += 1;
        (self.written.entry(k).or_default()).push((self.writes, bytes.clone()));
        self.volatile.insert(k, bytes);
    }

    /// What a sync that begins now covers: the writes numbered up to it, those
    /// completed before it began.
    pub(crate) fn sync_ticket(&self) -> u64 {
        self.writes
    }

    /// The store writes `bytes` back to `location` (an inline write's data, after
    /// a failed sync or at recovery; no injection: these are the bytes the
    /// location already held); volatile until a flush. Unlike a new write it
    /// keeps the location's injected persistent fault: a verification in flight
    /// when the rewrite lands met that fault, and the checker must still see it
    /// there (the crash sweep under 30 % transient errors called such an FPRE004
    /// spurious once a rewrite had cleared its misdirected-write fault).
    pub(crate) fn rewrite(&mut self, location: Location, bytes: Bytes) {
        self.clean.remove(&key(location));
        self.dirty(key(location), own_copy(&bytes));
    }

    /// A sync of `device` starts and completes at once: [`begin_sync`](Self::begin_sync)
    /// then [`end_sync`](Self::end_sync).
    #[cfg(test)]
    pub(crate) fn sync(&mut self, device: u16) -> Result<(), Error> {
        let ticket = self.sync_ticket();
        let _slower = self.begin_sync(device);
        self.end_sync(device, ticket)
    }

    /// A sync of `device` starts; the kernel's writeback of the device's dirty
    /// pages may fail now, before any sync returns. A failed writeback makes
    /// nothing durable, and in a third of failures drops the device's dirty
    /// pages, every write no sync made durable (as Linux may); in another
    /// third it marks them clean without writing them (as ext4 may): reads
    /// see them until a power cut, no later sync writes them. The error waits
    /// for the next sync of the device to end, which reports it, once, as
    /// Linux reports it once per open file: the sync after that returns `Ok`
    /// over the lost writes. Telling that apart is the store's job
    /// (`backend::device_files`). A read between the failure and the store's
    /// hearing of it finds the pages gone.
    ///
    /// Returns how much longer than a good one this sync takes: a failing
    /// writeback is slow (the block layer retries before it gives up; SCSI's
    /// command timeout is 30 s), here 2–20 ms ([`FAILING_SYNC_NS`]), longer than
    /// the verifier's retries (0.7 ms under the default policy), so that a read
    /// meeting the dropped pages may run out of retries before the store hears
    /// (unless another sync of the device ends first and reports the error).
    pub(crate) fn begin_sync(&mut self, device: u16) -> u64 {
        if self.sync_rng.random_range(0..1_000_000) >= self.faults_cfg.transient_ppm {
            return 0;
        }
        let fate = self.sync_rng.random_range(0..3);
        if fate > 0 {
            let mut rest = self.volatile.split_off(&(device, 0));
            if let Some(next) = device.checked_add(1) {
                let mut after = rest.split_off(&(next, 0));
                self.volatile.append(&mut after);
            }
            for k in rest.keys() {
                self.written.remove(k);
            }
            match fate {
                1 => self.dropped_pages += rest.len() as u64,
                _ => self.clean.append(&mut rest),
            }
        }
        self.writeback_failed.insert(device);
        self.sync_rng.random_range(FAILING_SYNC_NS)
    }

    /// Whether a writeback of `device` failed and no sync has reported it
    /// yet: the store has not heard of it, so it has not written back what
    /// the failure may have dropped.
    pub(crate) fn writeback_unreported(&self, device: u16) -> bool {
        self.writeback_failed.contains(&device)
    }

    /// A sync of `device` that [`begin_sync`](Self::begin_sync) started, with
    /// `ticket` ([`sync_ticket`](Self::sync_ticket)) taken as it began, ends:
    /// `Err` if a writeback of the device failed since the last sync reported
    /// one, else every write of the device numbered up to `ticket` becomes
    /// durable (a write that completed while the sync ran stays volatile).
    pub(crate) fn end_sync(&mut self, device: u16, ticket: u64) -> Result<(), Error> {
        if self.writeback_failed.remove(&device) {
            return Err(injected(device, "sync"));
        }
        self.flush_upto(device, ticket);
        Ok(())
    }

    /// Makes every volatile write of `device` durable (no injection).
    pub(crate) fn flush(&mut self, device: u16) {
        self.flush_upto(device, u64::MAX);
    }

    /// `device`'s file is cut to `length` (the store's `trim`, a `set_len`
    /// that shrinks it): every byte past it is gone for reads at once, and
    /// until a sync of the device completes a power cut may undo the cut
    /// (see `untrimmed`). The store cuts only free space: a durable record
    /// whose bytes this takes is lost, which the checker reports.
    pub(crate) fn trim(&mut self, device: u16, length: u64) -> Result<(), Error> {
        // The part of an entry at `offset` that survives the cut: all of it,
        // a prefix, or nothing.
        let cut = |offset: u64, bytes: &Bytes| -> Option<Option<Bytes>> {
            let end = offset + bytes.len() as u64;
            match () {
                () if end <= length => None,
                () if offset >= length => Some(None),
                () => Some(Some(Bytes::from(&bytes[..(length - offset) as usize]))),
            }
        };
        let mut taken = Vec::new();
        let keys: Vec<(u16, u64)> = (self.durable.keys())
            .filter(|k| k.0 == device)
            .copied()
            .collect();
        for k in keys {
            let Some(bytes) = self.durable.get(&k) else {
                continue;
            };
            if let Some(rest) = cut(k.1, bytes) {
                taken.push((k, bytes.clone()));
                match rest {
                    Some(prefix) => self.durable.insert(k, prefix),
                    None => self.durable.remove(&k),
                };
            }
        }
        // Numbered as a write is: a sync that began before it does not make
        // it final.
        self.writes += 1;
        self.untrimmed.push((device, self.writes, taken));
        for map in [&mut self.volatile, &mut self.clean] {
            let past: Vec<((u16, u64), Option<Bytes>)> = (map
                .range((device, 0)..=(device, u64::MAX)))
            .filter_map(|(k, bytes)| cut(k.1, bytes).map(|rest| (*k, rest)))
            .collect();
            for (k, rest) in past {
                match rest {
                    Some(prefix) => map.insert(k, prefix),
                    None => map.remove(&k),
                };
            }
        }
        (self.written).retain(|k, versions| {
            k.0 != device || versions.iter().all(|(_, b)| cut(k.1, b).is_none())
        });
        (self.faults).retain(|k, _| k.0 != device || k.1 < length);
        Ok(())
    }

    /// Makes the volatile writes of `device` numbered up to `ticket` durable.
    fn flush_upto(&mut self, device: u16, ticket: u64) {
        // A completed sync writes the file's size too: a cut made before it
        // began stays.
        (self.untrimmed).retain(|&(d, n, _)| d != device || n > ticket);
        let mut rest = self.volatile.split_off(&(device, 0));
        if let Some(next) = device.checked_add(1) {
            let mut after = rest.split_off(&(next, 0));
            self.volatile.append(&mut after);
        }
        for (k, bytes) in rest {
            let Some(versions) = self.written.get_mut(&k) else {
                self.durable.insert(k, bytes);
                continue;
            };
            let covered = versions.partition_point(|&(seq, _)| seq <= ticket);
            if let Some((_, last)) = versions.drain(..covered).next_back() {
                self.durable.insert(k, last);
            }
            if versions.is_empty() {
                self.written.remove(&k);
            } else {
                self.volatile.insert(k, bytes);
            }
        }
    }

    /// A power cut: each write no sync made durable is lost, or survives whole,
    /// or survives torn: each of its sectors persisted or not, in any subset, as a
    /// drive's write cache may have written them back. A sector that did not
    /// persist keeps what the disk held there (garbage where it held nothing).
    /// Returns how many survived.
    ///
    /// Surviving writes are harmless to a correct protocol: an unsynced write
    /// targets a location that no durable record references (invariant 10), or
    /// rewrites the bytes a durable record's location already holds (an inline
    /// write's write-back, recovery's redo), which no subset of sectors can
    /// change. Sectors, not bytes: a tear inside a sector that rewrote identical
    /// bytes destroyed them in an earlier model no disk matches.
    pub(crate) fn crash(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        // Clean pages that were never written: gone with the page cache, as
        // is every writeback error no sync reported yet.
        self.clean.clear();
        self.writeback_failed.clear();
        self.written.clear();
        // A cut no sync made final is undone or kept, whole (one `set_len`),
        // and in order per file: some of a device's newest are undone, newest
        // first (two undone leave the bytes from before the older), the rest
        // kept.
        let mut kept = std::collections::BTreeSet::new();
        for (device, _, taken) in std::mem::take(&mut self.untrimmed).into_iter().rev() {
            if kept.contains(&device) || rng.random_bool(0.5) {
                kept.insert(device);
                continue;
            }
            for (k, bytes) in taken {
                self.durable.insert(k, bytes);
            }
        }
        let mut survived = 0;
        for (k, bytes) in std::mem::take(&mut self.volatile) {
            if rng.random_bool(0.5) {
                continue;
            }
            survived += 1;
            let mut v = bytes.to_vec();
            if rng.random_bool(0.5) && !v.is_empty() {
                let old = self.durable.get(&k);
                for (i, sector) in v.chunks_mut(SECTOR).enumerate() {
                    if rng.random_bool(0.5) {
                        continue;
                    }
                    for (j, b) in sector.iter_mut().enumerate() {
                        *b = match old.and_then(|o| o.get(i * SECTOR + j)) {
                            Some(&was) => was,
                            None => rng.random(),
                        };
                    }
                }
            }
            self.durable.insert(k, Bytes::from(v));
        }
        survived
    }

    /// A misdirected write: the bytes meant for `intended` land on `victim`; the
    /// intended location keeps showing what it held. Both stay put. The device
    /// believes it wrote `intended`: that write is volatile until the next sync of
    /// its device, like any other (the checker's durable view then holds the
    /// intended bytes; the fault overlay is what reads see).
    pub(crate) fn misdirect(&mut self, intended: Location, victim: Location, bytes: Bytes) {
        let bytes = own_copy(&bytes);
        let stale = self
            .media(intended)
            .unwrap_or_else(|_| Bytes::from(vec![0u8; intended.length as usize]));
        self.clean.remove(&key(intended));
        self.dirty(key(intended), bytes.clone());
        self.faults.insert(key(intended), Fault::Shows(stale));
        self.faults.insert(key(victim), Fault::Shows(bytes));
        self.persistent_injected += 1;
    }

    /// Whether a misdirected write should happen now (budget permitting).
    pub(crate) fn roll_misdirect(&mut self) -> bool {
        self.persistent_injected < self.faults_cfg.persistent_budget
            && self.rng.random_range(0..1_000_000) < self.faults_cfg.misdirect_ppm
    }

    /// Whether a bit flip at rest should happen now (budget permitting).
    pub(crate) fn roll_bitflip(&mut self) -> bool {
        self.persistent_injected < self.faults_cfg.persistent_budget
            && self.rng.random_range(0..1_000_000) < self.faults_cfg.bitflip_ppm
    }

    /// Flips bits at rest at `location`.
    pub(crate) fn flip(&mut self, location: Location) {
        let index = self.rng.random_range(0..location.length.max(1)) as usize;
        let mask = 1u8 << self.rng.random_range(0..8);
        self.faults
            .entry(key(location))
            .or_insert(Fault::BitFlip { index, mask });
        self.persistent_injected += 1;
    }

    /// Whether a persistent fault sits at `location`.
    pub(crate) fn is_faulty(&self, location: Location) -> bool {
        self.faults.contains_key(&key(location))
    }

    /// Records the replica of a committed write.
    pub(crate) fn add_replica(&mut self, extent: ExtentId, generation: u64, bytes: Bytes) {
        self.replicas.insert((extent, generation), own_copy(&bytes));
    }

    /// The replica source.
    pub(crate) fn replica(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        self.replicas.get(&(extent, generation)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fabric(transient_ppm: u32) -> Fabric {
        let faults = Faults {
            transient_ppm,
            misdirect_ppm: 0,
            bitflip_ppm: 0,
            persistent_budget: 4,
            disk_full_ppm: 0,
        };
        let latency = super::super::SimConfig::default().latency;
        let rng = ChaCha8Rng::seed_from_u64(1);
        Fabric::new(3, latency, faults, rng, ChaCha8Rng::seed_from_u64(2))
    }

    fn bytes(fill: u8) -> Bytes {
        Bytes::from(vec![fill; 64])
    }

    /// A cut of a device file takes the bytes past it at once; a power cut
    /// may bring the durable ones back until a sync that began after the cut
    /// completes, and never after.
    #[test]
    fn a_cut_is_final_only_once_a_sync_that_began_after_it_completes() {
        let (kept, cut) = (Location::new(1, 0, 64), Location::new(1, 4096, 64));
        let mut undone = 0;
        for seed in 0..32 {
            let mut f = fabric(0);
            f.write(kept, bytes(1)).expect("no injection");
            f.write(cut, bytes(2)).expect("no injection");
            f.sync(1).expect("no injection");
            let before = f.sync_ticket();
            f.trim(1, 4096).expect("no injection");
            assert!(f.read(cut).0.is_err(), "gone for reads at once");
            assert_eq!(f.device_lens(2), vec![None, Some(64)]);
            // A sync that began before the cut does not make it final.
            f.flush_upto(1, before);
            f.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(f.durable(kept), Some(&bytes(1)));
            match f.durable(cut) {
                Some(b) => {
                    assert_eq!(b, &bytes(2), "undone whole");
                    undone += 1;
                }
                None => assert_eq!(f.device_lens(2), vec![None, Some(64)]),
            }
            // Cut again, then a sync: final.
            f.trim(1, 4096).expect("no injection");
            f.sync(1).expect("no injection");
            f.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(f.durable(cut), None, "seed {seed}");
        }
        assert!(undone > 4 && undone < 28, "{undone} of 32 undone");
    }

    #[test]
    fn a_write_is_volatile_until_a_sync_of_its_device_completes() {
        let mut f = fabric(0);
        let here = Location::new(1, 4096, 64);
        let other_device = Location::new(2, 4096, 64);
        f.write(here, bytes(7)).expect("no injection");
        f.write(other_device, bytes(8)).expect("no injection");
        // Reads see the completed write, the durable view does not.
        assert_eq!(f.read(here).0.expect("readable"), bytes(7));
        assert_eq!(f.durable(here), None, "not durable before a sync");
        assert_eq!(f.volatile(here), Some(&bytes(7)));
        // A sync of another device makes nothing of this one durable.
        f.sync(0).expect("no injection");
        f.sync(2).expect("no injection");
        assert_eq!(f.durable(here), None);
        assert_eq!(f.durable(other_device), Some(&bytes(8)));
        // Its own device's sync does.
        f.sync(1).expect("no injection");
        assert_eq!(f.durable(here), Some(&bytes(7)));
        assert_eq!(f.volatile(here), None);
        // An overwrite is volatile again: the durable view keeps the synced bytes.
        f.write(here, bytes(9)).expect("no injection");
        assert_eq!(f.media(here).expect("readable"), bytes(9));
        assert_eq!(f.durable(here), Some(&bytes(7)));
        f.flush(1);
        assert_eq!(f.durable(here), Some(&bytes(9)));
    }

    #[test]
    fn a_failed_sync_makes_nothing_durable() {
        let mut f = fabric(1_000_000);
        let here = Location::new(0, 0, 64);
        f.volatile.insert(key(here), bytes(3));
        assert!(matches!(f.sync(0), Err(Error::Io { op: "sync", .. })));
        assert_eq!(f.durable(here), None);
        assert!(f.write(here, bytes(4)).is_err(), "writes fail too");
        let (read, injected) = f.read(here);
        assert!(read.is_err() && injected);
    }

    #[test]
    fn a_failed_writeback_takes_the_pages_at_once_and_fails_the_first_sync_to_end() {
        let mut f = fabric(1_000_000);
        let here = Location::new(0, 0, 64);
        f.volatile.insert(key(here), bytes(3));
        let slower = f.begin_sync(0);
        assert!(FAILING_SYNC_NS.contains(&slower));
        // Dropped or marked clean as the sync starts, before any sync returns.
        assert_eq!(f.volatile(here), None);
        f.faults_cfg.transient_ppm = 0;
        f.begin_sync(0);
        // A sync that started later but ends first hears of it; the next
        // returns Ok over the lost write, as the kernel reports it once.
        let ticket = f.sync_ticket();
        assert!(matches!(
            f.end_sync(0, ticket),
            Err(Error::Io { op: "sync", .. })
        ));
        assert!(f.end_sync(0, ticket).is_ok());
        assert_eq!(f.durable(here), None);
    }

    /// A sync makes durable the writes completed before it began, not one
    /// that completed while it ran (`fdatasync` promises no more): a power
    /// cut after it may lose that write, never the earlier one; a later sync
    /// makes it durable.
    #[test]
    fn a_sync_covers_the_writes_completed_before_it_began() {
        let (before, during) = (Location::new(0, 0, 512), Location::new(0, 4096, 512));
        let synced_around = || {
            let mut f = fabric(0);
            f.write(before, bytes(1)).unwrap();
            let ticket = f.sync_ticket();
            let _ = f.begin_sync(0);
            f.write(during, bytes(2)).unwrap();
            f.end_sync(0, ticket).unwrap();
            f
        };
        let mut lost = 0;
        for seed in 0..16u64 {
            let mut f = synced_around();
            f.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(f.durable(before), Some(&bytes(1)), "seed {seed}");
            lost += u32::from(f.durable(during) != Some(&bytes(2)));
        }
        assert!(
            lost > 0,
            "a power cut may lose the write made during the sync"
        );
        let mut f = synced_around();
        assert_eq!(f.volatile(during), Some(&bytes(2)));
        let ticket = f.sync_ticket();
        f.end_sync(0, ticket).unwrap();
        assert_eq!(f.durable(during), Some(&bytes(2)));
    }

    /// A location written before a sync began and again while it ran: the
    /// sync makes the first write durable, the second stays volatile (the
    /// page cache keeps one page per location, the fabric every version).
    #[test]
    fn a_location_written_again_during_a_sync_keeps_the_covered_write() {
        let mut f = fabric(0);
        let here = Location::new(1, 4608, 151);
        f.write(here, bytes(4)).unwrap();
        let ticket = f.sync_ticket();
        let _ = f.begin_sync(1);
        f.rewrite(here, bytes(5));
        f.end_sync(1, ticket).unwrap();
        assert_eq!(f.durable(here), Some(&bytes(4)));
        assert_eq!(f.volatile(here), Some(&bytes(5)));
        f.flush(1);
        assert_eq!(f.durable(here), Some(&bytes(5)));
        assert_eq!(f.volatile(here), None);
    }

    #[test]
    fn faults_apply_to_reads_and_a_write_clears_them() {
        let mut f = fabric(0);
        let intended = Location::new(0, 0, 64);
        let victim = Location::new(1, 0, 64);
        f.write(victim, bytes(1)).expect("no injection");
        f.sync(1).expect("no injection");
        f.write(intended, bytes(2)).expect("no injection");
        f.sync(0).expect("no injection");
        f.flip(intended);
        assert!(f.is_faulty(intended));
        assert_ne!(f.media(intended).expect("readable"), bytes(2));
        assert_eq!(f.durable(intended), Some(&bytes(2)), "damage is not loss");
        // A misdirected write: the victim shows it at once, the intended location
        // keeps showing what it held; the device's own view goes the durable path.
        let shown = f.media(intended).expect("readable");
        f.misdirect(intended, victim, bytes(5));
        assert_eq!(f.media(victim).expect("readable"), bytes(5));
        assert_eq!(f.media(intended).expect("readable"), shown);
        assert_eq!(f.durable(victim), Some(&bytes(1)));
        assert_eq!(f.durable(intended), Some(&bytes(2)));
        f.sync(0).expect("no injection");
        assert_eq!(f.durable(intended), Some(&bytes(5)));
        assert!(f.is_faulty(intended) && f.is_faulty(victim));
        // A new write clears the fault.
        f.write(victim, bytes(6)).expect("no injection");
        assert!(!f.is_faulty(victim));
        assert_eq!(f.media(victim).expect("readable"), bytes(6));
    }
}
