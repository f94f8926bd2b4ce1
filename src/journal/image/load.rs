//! Loading a checkpoint into an image: one thread reads and decodes its frames
//! ([`scan_checkpoint`]) while the caller's thread applies them, so that
//! decoding (reads, CRCs) overlaps the table's work (the first touch of its
//! memory dominates an open of millions of records on this machine). The
//! entries arrive in file order, and applying them is what a single thread
//! does, so the image does not depend on the split.

use super::{Checkpoint, Image, other_devices};
use crate::error::{Error, Result};
use crate::journal::Entry;
use crate::journal::frame::{Header, scan_checkpoint};

/// Entries handed over at a time (about 0.4 MiB); with the channel's two
/// batches in flight, the decoder runs at most three batches ahead.
const BATCH: usize = 4096;

/// Applies every record, bad location and degraded device of checkpoint
/// `number` (file `name`) to `image`, checking its header and end frame.
///
/// # Errors
///
/// [`Error::CheckpointCorrupt`] for a checkpoint that is truncated or fails a
/// check, or whose header names another checkpoint; [`Error::InvalidConfig`]
/// for another device count than `image`'s table was configured with;
/// [`scan_checkpoint`]'s errors.
pub(super) fn load_checkpoint(
    number: u64,
    name: &str,
    checkpoint: Checkpoint<'_>,
    image: &mut Image,
) -> Result<Header> {
    let corrupt = |reason| Error::CheckpointCorrupt {
        file: name.to_string(),
        reason,
    };
    let configured = image.records.bounds().map(|b| b.devices);
    let head = |h: &Header| match configured {
        _ if h.number != number => Err(corrupt("the header names another checkpoint")),
        // Before any record is checked against the configured devices.
        Some(devices) if devices != h.devices => Err(other_devices(h.devices, devices)),
        _ => Ok(()),
    };
    let (tx, rx) = crossbeam::channel::bounded::<Vec<(u64, Entry)>>(2);
    std::thread::scope(|s| {
        let decoder = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let header =
                scan_checkpoint(checkpoint.read, name, checkpoint.chunk, head, |seq, e| {
                    batch.push((seq, e));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        // The applier stopped on an error of its own: it reports that one.
                        tx.send(full).map_err(|_| corrupt("the load stopped"))?;
                    }
                    Ok(())
                })?;
            // As above: a closed channel means the applier's error is reported.
            let _ = tx.send(batch);
            Ok(header)
        });
        let applied = apply_all(&rx, image, &corrupt);
        // Unblocks a decoder waiting to send after an error here.
        drop(rx);
        // A panic there is the engine's `Fs` panicking under a read (the
        // decoding itself returns errors): an I/O failure, as everywhere a
        // file-system call panics (`fs::unless_panicked`), never damage.
        let decoded = decoder.join().unwrap_or_else(|_| {
            Err(crate::Error::Io {
                device: crate::journal::METADATA_DEVICE,
                op: "read",
                kind: std::io::ErrorKind::Other,
                message: format!("the file system panicked reading {name}"),
            })
        });
        // The applier's error comes first in the file: the decoder's is then
        // the stop it caused, or damage past it.
        let ended = applied?;
        let header = decoded?;
        if !ended {
            return Err(corrupt("truncated: no end frame"));
        }
        image.records.refused()?;
        Ok(header)
    })
}

/// Applies the batches as they arrive until the decoder stops; whether the end
/// frame closed them.
fn apply_all(
    rx: &crossbeam::channel::Receiver<Vec<(u64, Entry)>>,
    image: &mut Image,
    corrupt: &dyn Fn(&'static str) -> Error,
) -> Result<bool> {
    let mut ended = false;
    for batch in rx {
        for (seq, entry) in batch {
            if ended {
                return Err(corrupt("frames after the end frame"));
            }
            match entry {
                Entry::End { frames } if frames == seq => ended = true,
                Entry::End { .. } => return Err(corrupt("the end frame miscounts")),
                e => image.apply(&e),
            }
        }
    }
    Ok(ended)
}
