//! Device health: N errors within T seconds degrade a device.
//!
//! Time is passed in by the caller (milliseconds on any monotonic clock), so the
//! emulator's virtual clock and the store's real one drive the same code.

use crate::sync::Mutex;
use std::collections::VecDeque;

/// Error history of every device.
#[derive(Debug)]
pub(crate) struct Health {
    devices: Box<[Mutex<DeviceHealth>]>,
    threshold: u32,
    window_ms: u64,
}

#[derive(Debug, Default)]
struct DeviceHealth {
    /// Times of recent errors, oldest first; at most `threshold` kept.
    errors_ms: VecDeque<u64>,
    degraded: bool,
    total_errors: u64,
}

impl Health {
    pub(crate) fn new(devices: u16, threshold: u32, window_ms: u64) -> Self {
        Health {
            devices: (0..devices)
                .map(|_| Mutex::new(DeviceHealth::default()))
                .collect(),
            threshold,
            window_ms,
        }
    }

    /// Records one error on `device` at `now_ms`; returns true if this error
    /// degraded the device.
    pub(crate) fn record_error(&self, device: u16, now_ms: u64) -> bool {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return false;
        };
        let mut dev = dev.lock();
        dev.total_errors += 1;
        dev.errors_ms.push_back(now_ms);
        while dev
            .errors_ms
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= self.window_ms)
        {
            dev.errors_ms.pop_front();
        }
        // Bounded: only the last `threshold` errors matter.
        while dev.errors_ms.len() > self.threshold as usize {
            dev.errors_ms.pop_front();
        }
        let newly = !dev.degraded && dev.errors_ms.len() >= self.threshold as usize;
        dev.degraded |= newly;
        newly
    }

    /// Whether `device` has been degraded.
    pub(crate) fn is_degraded(&self, device: u16) -> bool {
        self.devices
            .get(usize::from(device))
            .is_some_and(|d| d.lock().degraded)
    }

    /// Devices degraded so far.
    pub(crate) fn degraded(&self) -> Vec<u16> {
        (0..self.devices.len() as u16)
            .filter(|&d| self.is_degraded(d))
            .collect()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ten_errors_in_the_window_degrade_nine_do_not() {
        let h = Health::new(2, 10, 600_000);
        for i in 0..9 {
            assert!(!h.record_error(0, i * 1000));
        }
        assert!(!h.is_degraded(0));
        assert!(h.record_error(0, 9_000), "the tenth error degrades");
        assert!(h.is_degraded(0));
        assert!(!h.is_degraded(1));
    }

    #[test]
    fn errors_spread_beyond_the_window_do_not_degrade() {
        let h = Health::new(1, 10, 600_000);
        for i in 0..100 {
            h.record_error(0, i * 70_000); // at most 9 in any 600 s window
        }
        assert!(!h.is_degraded(0));
    }
}
