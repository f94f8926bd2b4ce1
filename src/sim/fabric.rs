//! The simulated storage fabric: pristine storage under a fault overlay, a replica
//! source, and a per-device latency model with jitter, a heavy tail and bursts.

use super::config::{Faults, Latency};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::record::{ExtentId, Location};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// A persistent fault at one location: stays put across retries until the location
/// is written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Reads return the pristine bytes with `mask` xored at `index`.
    BitFlip { index: usize, mask: u8 },
    /// Reads return these bytes (a misdirected write landed here, or the intended
    /// write never did).
    Shows(Bytes),
}

/// The fabric.
#[derive(Debug)]
pub(crate) struct Fabric {
    /// What was written, by (device, offset).
    pristine: HashMap<(u16, u64), Bytes>,
    /// Persistent faults, by (device, offset).
    faults: HashMap<(u16, u64), Fault>,
    /// A good copy of every committed (extent, generation).
    replicas: HashMap<(ExtentId, u64), Bytes>,
    /// Consecutive injected transient read errors per location (for classifying an
    /// FPRE004 as real when they alone exhausted the retries).
    transient_streak: HashMap<(u16, u64), u32>,
    burst_left: Vec<u32>,
    latency: Latency,
    faults_cfg: Faults,
    pub(crate) persistent_injected: u32,
    pub(crate) rng: ChaCha8Rng,
}

fn key(l: Location) -> (u16, u64) {
    (l.device, l.offset)
}

impl Fabric {
    pub(crate) fn new(devices: u16, latency: Latency, faults: Faults, rng: ChaCha8Rng) -> Self {
        Fabric {
            pristine: HashMap::new(),
            faults: HashMap::new(),
            replicas: HashMap::new(),
            transient_streak: HashMap::new(),
            burst_left: vec![0; usize::from(devices)],
            latency,
            faults_cfg: faults,
            persistent_injected: 0,
            rng,
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

    /// The bytes a read of `location` returns now.
    pub(crate) fn read(&mut self, location: Location) -> Result<Bytes, Error> {
        if self.transient() {
            *self.transient_streak.entry(key(location)).or_default() += 1;
            return Err(Error::Io {
                device: location.device,
                op: "read",
                kind: std::io::ErrorKind::Other,
                message: "injected transient error".into(),
            });
        }
        self.transient_streak.remove(&key(location));
        self.media(location)
    }

    /// What the medium holds at `location` (faults applied), without injection.
    pub(crate) fn media(&self, location: Location) -> Result<Bytes, Error> {
        let want = location.length as usize;
        let short = |actual: usize| Error::ShortRead {
            location,
            actual: actual as u64,
        };
        let base = match self.faults.get(&key(location)) {
            Some(Fault::Shows(bytes)) => bytes.clone(),
            Some(Fault::BitFlip { index, mask }) => {
                let pristine = self.pristine.get(&key(location)).ok_or_else(|| short(0))?;
                let mut v = pristine.to_vec();
                if let Some(b) = v.get_mut(*index) {
                    *b ^= mask;
                }
                Bytes::from(v)
            }
            None => self
                .pristine
                .get(&key(location))
                .cloned()
                .ok_or_else(|| short(0))?,
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

    /// The pristine bytes at `location` (what was written), for the checker.
    pub(crate) fn pristine(&self, location: Location) -> Option<&Bytes> {
        self.pristine.get(&key(location))
    }

    /// Applies a completed write; `false` if a transient error failed it.
    pub(crate) fn write(&mut self, location: Location, bytes: Bytes) -> bool {
        if self.transient() {
            return false;
        }
        self.faults.remove(&key(location));
        self.pristine.insert(key(location), bytes);
        true
    }

    /// A misdirected write: the bytes meant for `intended` land on `victim`; the
    /// intended location keeps showing what it held. Both stay put.
    pub(crate) fn misdirect(&mut self, intended: Location, victim: Location, bytes: Bytes) {
        let stale = self
            .media(intended)
            .unwrap_or_else(|_| Bytes::from(vec![0u8; intended.length as usize]));
        self.pristine.insert(key(intended), bytes.clone());
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

    /// Whether a persistent fault sits at `location`, or injected transient errors
    /// alone failed at least `streak` reads of it in a row.
    pub(crate) fn is_faulty(&self, location: Location, streak: u32) -> bool {
        self.faults.contains_key(&key(location))
            || self
                .transient_streak
                .get(&key(location))
                .is_some_and(|&n| n >= streak)
    }

    /// Records the replica of a committed write.
    pub(crate) fn add_replica(&mut self, extent: ExtentId, generation: u64, bytes: Bytes) {
        self.replicas.insert((extent, generation), bytes);
    }

    /// The replica source.
    pub(crate) fn replica(&self, extent: ExtentId, generation: u64) -> Option<Bytes> {
        self.replicas.get(&(extent, generation)).cloned()
    }
}
