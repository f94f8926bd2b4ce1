//! Group sync of a device: concurrent writers share one `sync`.
//!
//! A writer's bytes are on the device once its `write_at` returned; any sync that
//! *starts* after that covers them. So a writer that asks for a sync either starts
//! one (no sync in flight), or waits for the one in flight to end and then for the
//! next one, which another waiter may start for everybody. With `n` writers of a
//! device the syncs per write drop from 1 towards `1/n`, and the writers leave
//! together, so their journal records also share one journal sync.
//!
//! Bounded: a waiter waits for at most two syncs (the one in flight and the next).
//! A failed sync fails every writer it would have covered, and no later one.

use crate::error::Result;
use crate::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Syncs started so far.
    started: u64,
    /// Syncs finished so far (`started - 1` or `started`).
    finished: u64,
    /// The result of the last finished sync.
    last: Option<crate::Error>,
}

/// One device's sync group.
#[derive(Debug)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
}

impl Default for GroupSync {
    fn default() -> Self {
        GroupSync {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }
}

impl GroupSync {
    /// Returns once a sync that started after this call began has finished (its
    /// result), running it here if no other caller does.
    pub(crate) fn sync(&self, run: impl FnOnce() -> Result<()>) -> Result<()> {
        // Taken at most once: the sync this caller starts is the one it waits for.
        let mut run = Some(run);
        let mut g = self.state.lock();
        // The first sync that starts from now on covers this caller's writes.
        let target = g.started + 1;
        loop {
            if g.finished >= target {
                return match &g.last {
                    // A later sync's success also covers us; a later failure may not
                    // have been ours, but an error is the safe answer.
                    Some(err) => Err(err.clone()),
                    None => Ok(()),
                };
            }
            if g.started == g.finished {
                // No sync in flight: start the one that covers `target`.
                g.started += 1;
                let this = g.started;
                drop(g);
                // If `run` unwinds (a panicking backend), the guard still ends this
                // sync, as failed, so its waiters never hang.
                let mut guard = Finish {
                    group: self,
                    this,
                    result: Err(crate::Error::Io {
                        device: u16::MAX,
                        op: "sync",
                        kind: std::io::ErrorKind::Other,
                        message: "the sync panicked".into(),
                    }),
                };
                guard.result = match run.take() {
                    Some(run) => run(),
                    None => Err(crate::Error::Internal {
                        what: "group sync: a caller led twice",
                    }),
                };
                drop(guard);
                g = self.state.lock();
                continue;
            }
            g = self.done.wait(g);
        }
    }
}

/// Ends the sync a leader started, even if it unwinds.
struct Finish<'a> {
    group: &'a GroupSync,
    this: u64,
    result: Result<()>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut g = self.group.state.lock();
        g.finished = self.this;
        g.last = std::mem::replace(&mut self.result, Ok(())).err();
        self.group.done.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_callers_share_syncs_and_each_is_covered() {
        let group = Arc::new(GroupSync::default());
        let runs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, runs) = (Arc::clone(&group), Arc::clone(&runs));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        group
                            .sync(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs <= 1600, "never more syncs than calls: {runs}");
        assert!(runs >= 200, "one thread alone needs 200: {runs}");
    }

    /// A panicking sync (a buggy backend) ends as failed: later callers do not hang.
    #[test]
    fn a_panicking_sync_does_not_hang_later_callers() {
        let group = GroupSync::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.sync(|| panic!("backend bug"))
        }));
        assert!(caught.is_err());
        assert_eq!(group.sync(|| Ok(())), Ok(()));
    }

    #[test]
    fn a_failed_sync_fails_its_callers_and_the_next_one_recovers() {
        let group = GroupSync::default();
        let err = crate::Error::Io {
            device: 0,
            op: "sync",
            kind: std::io::ErrorKind::Other,
            message: "injected".into(),
        };
        assert_eq!(group.sync(|| Err(err.clone())), Err(err));
        assert_eq!(group.sync(|| Ok(())), Ok(()));
    }
}
