//! The legacy protocol: the pre-fix design, kept to reproduce FPRE004.
//!
//! * "last write pending" and "cache ready" are two flags, set and cleared by
//!   separate steps (each metadata step takes [`STEP_GAP_US`]);
//! * a compaction marks the record "write pending" while it rewrites it, and a
//!   prefetch that completes meanwhile marks it "cache ready": two states at once;
//! * the verifier reads "cache ready" *then* "write pending" (the wrong order), and
//!   location and checksum at different moments, and calls any inconsistency a
//!   fault: three retries, then FPRE004 and quarantine;
//! * the cache is keyed by extent only: a fill that loaded an old generation is
//!   served after the write that superseded it;
//! * checksums are plain CRC32C, not bound to identity.

use super::history::value;
use crate::bytes::Bytes;
use crate::error::Error;
use crate::policy::IntegrityPolicy;
use crate::protocol::{IoRequest, IoResult, Step};
use crate::record::{ExtentId, Location};
use std::collections::HashMap;

/// Time between two separate metadata steps of one legacy operation, µs.
pub(crate) const STEP_GAP_US: u64 = 5;

/// One legacy record: fields updated one at a time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Record {
    pub(crate) location: Location,
    pub(crate) checksum: u32,
    pub(crate) generation: u64,
    pub(crate) write_pending: bool,
    pub(crate) cache_ready: bool,
    pub(crate) quarantined: bool,
}

/// All legacy metadata, the untagged cache and a bump allocator.
#[derive(Debug)]
pub(crate) struct Legacy {
    pub(crate) records: Vec<Record>,
    cache: HashMap<ExtentId, Bytes>,
    next_offset: Vec<u64>,
    next_device: usize,
    /// Generations that became visible in the last step, for the model history.
    pub(crate) commits: Vec<(ExtentId, u64, Bytes)>,
}

impl Legacy {
    pub(crate) fn new(extents: u32, devices: u16) -> Self {
        Legacy {
            records: vec![Record::default(); extents as usize],
            cache: HashMap::new(),
            next_offset: vec![0; usize::from(devices)],
            next_device: 0,
            commits: Vec::new(),
        }
    }

    fn rec(&mut self, id: ExtentId) -> &mut Record {
        let i = id.0 as usize % self.records.len();
        &mut self.records[i]
    }

    fn allocate(&mut self, length: u32) -> Location {
        let device = self.next_device % self.next_offset.len();
        self.next_device += 1;
        let offset = self.next_offset[device];
        self.next_offset[device] += u64::from(length).div_ceil(4096).max(1) * 4096;
        Location::new(device as u16, offset, length)
    }
}

fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A legacy operation.
#[derive(Debug)]
pub(crate) enum Op {
    Read(Read),
    Write(Write),
    Compact(Compact),
    Verify(Verify),
}

/// What a legacy operation is fed.
#[derive(Debug)]
pub(crate) enum Input {
    Start,
    Io(IoResult),
    Backoff,
}

/// What a legacy operation returns.
#[derive(Debug)]
pub(crate) enum Out {
    Bytes(Bytes),
    Generation(u64),
    Unit,
}

#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) id: ExtentId,
    pub(crate) prefetch: bool,
    location: Location,
}

#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) id: ExtentId,
    len: usize,
    generation: u64,
    bytes: Option<Bytes>,
    location: Location,
    phase: u8,
}

#[derive(Debug)]
pub(crate) struct Compact {
    pub(crate) id: ExtentId,
    target: Location,
    phase: u8,
}

#[derive(Debug)]
pub(crate) struct Verify {
    pub(crate) id: ExtentId,
    policy: IntegrityPolicy,
    failures: u32,
    ready: bool,
    location: Location,
    phase: u8,
    last: String,
}

impl Op {
    pub(crate) fn read(id: ExtentId, prefetch: bool) -> Op {
        Op::Read(Read {
            id,
            prefetch,
            location: Location::default(),
        })
    }

    pub(crate) fn write(id: ExtentId, len: usize) -> Op {
        Op::Write(Write {
            id,
            len,
            generation: 0,
            bytes: None,
            location: Location::default(),
            phase: 0,
        })
    }

    pub(crate) fn compact(id: ExtentId) -> Op {
        Op::Compact(Compact {
            id,
            target: Location::default(),
            phase: 0,
        })
    }

    pub(crate) fn verify(id: ExtentId, policy: IntegrityPolicy) -> Op {
        Op::Verify(Verify {
            id,
            policy,
            failures: 0,
            ready: false,
            location: Location::default(),
            phase: 0,
            last: String::new(),
        })
    }

    pub(crate) fn step(&mut self, st: &mut Legacy, input: Input) -> Step<Out> {
        match self {
            Op::Read(op) => op.step(st, input),
            Op::Write(op) => op.step(st, input),
            Op::Compact(op) => op.step(st, input),
            Op::Verify(op) => op.step(st, input),
        }
    }
}

impl Read {
    fn step(&mut self, st: &mut Legacy, input: Input) -> Step<Out> {
        let id = self.id;
        match input {
            Input::Start => {
                let r = *st.rec(id);
                if r.quarantined {
                    return Step::Done(Err(Error::Quarantined { extent: id }));
                }
                if r.generation == 0 {
                    return Step::Done(Err(Error::NotReadable { extent: id }));
                }
                if !self.prefetch
                    && r.cache_ready
                    && let Some(bytes) = st.cache.get(&id)
                {
                    return Step::Done(Ok(Out::Bytes(bytes.clone())));
                }
                self.location = r.location;
                Step::Io(IoRequest::Read(r.location))
            }
            Input::Io(IoResult::Read(Ok(bytes))) => {
                // The checksum is read now, a separate step from the location.
                if crc(&bytes) != st.rec(id).checksum {
                    return Step::Done(Err(Error::ChecksumMismatch {
                        extent: id,
                        generation: 0,
                        location: self.location,
                        expected: st.rec(id).checksum,
                        actual: crc(&bytes),
                    }));
                }
                st.cache.insert(id, bytes.clone());
                st.rec(id).cache_ready = true;
                Step::Done(Ok(Out::Bytes(bytes)))
            }
            Input::Io(IoResult::Read(Err(err))) => Step::Done(Err(err)),
            _ => Step::Done(Err(Error::Shutdown)),
        }
    }
}

impl Write {
    fn step(&mut self, st: &mut Legacy, input: Input) -> Step<Out> {
        let id = self.id;
        match (self.phase, input) {
            (0, Input::Start) => {
                let r = st.rec(id);
                if r.write_pending {
                    return Step::Done(Err(Error::WriteInProgress { extent: id }));
                }
                r.write_pending = true;
                self.generation = r.generation + 1;
                let bytes = value(id, self.generation, self.len);
                self.location = st.allocate(bytes.len() as u32);
                self.bytes = Some(bytes.clone());
                self.phase = 1;
                Step::Io(IoRequest::Write(self.location, bytes))
            }
            (1, Input::Io(IoResult::Done(Ok(())))) => {
                self.phase = 2;
                Step::Io(IoRequest::Sync(self.location.device))
            }
            (2, Input::Io(IoResult::Done(Ok(())))) => {
                // Step 1 of the commit: the location.
                st.rec(id).location = self.location;
                self.phase = 3;
                Step::Backoff(STEP_GAP_US)
            }
            (3, Input::Backoff) => {
                // Step 2: checksum and generation.
                let bytes = self
                    .bytes
                    .clone()
                    .unwrap_or_else(|| Bytes::from(Vec::new()));
                let r = st.rec(id);
                r.checksum = crc(&bytes);
                r.generation = self.generation;
                r.quarantined = false;
                st.commits.push((id, self.generation, bytes));
                self.phase = 4;
                Step::Backoff(STEP_GAP_US)
            }
            (4, Input::Backoff) => {
                // Step 3: clear "write pending", drop the cache entry.
                let r = st.rec(id);
                r.write_pending = false;
                r.cache_ready = false;
                st.cache.remove(&id);
                Step::Done(Ok(Out::Generation(self.generation)))
            }
            (_, Input::Io(IoResult::Done(Err(err)))) => {
                st.rec(id).write_pending = false;
                Step::Done(Err(err))
            }
            _ => Step::Done(Err(Error::Shutdown)),
        }
    }
}

impl Compact {
    fn step(&mut self, st: &mut Legacy, input: Input) -> Step<Out> {
        let id = self.id;
        match (self.phase, input) {
            (0, Input::Start) => {
                let r = st.rec(id);
                if r.write_pending || r.quarantined || r.generation == 0 {
                    return Step::Done(Ok(Out::Unit));
                }
                // The compaction marks the record "last write pending".
                r.write_pending = true;
                let source = r.location;
                self.phase = 1;
                Step::Io(IoRequest::Read(source))
            }
            (1, Input::Io(IoResult::Read(Ok(bytes)))) => {
                self.target = st.allocate(bytes.len() as u32);
                self.phase = 2;
                Step::Io(IoRequest::Write(self.target, bytes))
            }
            (2, Input::Io(IoResult::Done(Ok(())))) => {
                self.phase = 3;
                Step::Io(IoRequest::Sync(self.target.device))
            }
            (3, Input::Io(IoResult::Done(Ok(())))) => {
                st.rec(id).location = self.target;
                self.phase = 4;
                Step::Backoff(STEP_GAP_US)
            }
            (4, Input::Backoff) => {
                st.rec(id).write_pending = false;
                Step::Done(Ok(Out::Unit))
            }
            (_, Input::Io(IoResult::Read(Err(err)) | IoResult::Done(Err(err)))) => {
                st.rec(id).write_pending = false;
                Step::Done(Err(err))
            }
            _ => Step::Done(Err(Error::Shutdown)),
        }
    }
}

impl Verify {
    fn fail(&mut self, st: &mut Legacy, why: String) -> Step<Out> {
        self.failures += 1;
        self.last = why;
        if self.failures > self.policy.retry_limit() {
            // The incident response: quarantine.
            st.rec(self.id).quarantined = true;
            return Step::Done(Err(Error::RetryLimitExceeded {
                extent: self.id,
                location: self.location,
                attempts: self.failures,
                last: std::mem::take(&mut self.last),
            }));
        }
        self.phase = 9;
        Step::Backoff(self.policy.backoff_us(self.failures))
    }

    fn step(&mut self, st: &mut Legacy, input: Input) -> Step<Out> {
        let id = self.id;
        match (self.phase, input) {
            (0 | 9, Input::Start | Input::Backoff) => {
                let r = *st.rec(id);
                if r.quarantined || r.generation == 0 {
                    return Step::Done(Ok(Out::Unit));
                }
                // Wrong order: "cache ready" first...
                self.ready = r.cache_ready;
                self.phase = 1;
                Step::Backoff(STEP_GAP_US)
            }
            (1, Input::Backoff) => {
                // ...then "write pending", a step later.
                let r = *st.rec(id);
                self.location = r.location;
                if self.ready && r.write_pending {
                    return self.fail(st, "inconsistent: write pending and cache ready".into());
                }
                self.phase = 2;
                Step::Io(IoRequest::Read(self.location))
            }
            (2, Input::Io(IoResult::Read(Ok(bytes)))) => {
                // The checksum, read after the location, may belong to another write.
                let expected = st.rec(id).checksum;
                if crc(&bytes) == expected {
                    Step::Done(Ok(Out::Unit))
                } else {
                    self.fail(st, format!("checksum mismatch at {}", self.location))
                }
            }
            (2, Input::Io(IoResult::Read(Err(err)))) => self.fail(st, err.to_string()),
            _ => Step::Done(Err(Error::Shutdown)),
        }
    }
}
