//! Loom models of a backup's cut (`journal::writer::cut`) against the
//! protocol: the image read under it holds a batch whole.

use super::{A, B, BatchWriteOp, model, value, world};
use crate::sync::thread;

/// A backup's image read while a batch of two writes commits: under a cut
/// (`journal::writer::cut`) it holds the batch whole or not at all, as a crash
/// at one instant would leave it. Without the cut a group commit handed out
/// after the image read the proposals commits one write of the batch before
/// the table read meets it and the other after.
fn backup_image_holds_a_batch_whole(cut: bool) {
    model(move || {
        let w = world(0, 8);
        let writer = {
            let w = w.clone();
            thread::spawn(move || {
                let items = [A, B].map(|id| (id, value(id, 1), crate::record::Tag::EMPTY));
                w.drive(BatchWriteOp::new(items.to_vec()), None)
            })
        };
        if cut {
            *w.cut.lock() = true;
        }
        let image = w.core.image();
        if cut {
            *w.cut.lock() = false;
        }
        let held = [A, B].map(|id| image.records.get(id.0).is_some_and(|r| r.generation == 1));
        assert_eq!(
            held[0], held[1],
            "the backup's image holds the batch whole or not at all"
        );
        writer.join().expect("writer").expect("the batch commits");
    });
}

#[test]
fn backup_image_racing_a_batch_commit_holds_it_whole() {
    backup_image_holds_a_batch_whole(true);
}

/// The mutant reads the image without the cut: a fuzzy image, as a
/// checkpoint's may be, holds half of the batch.
#[test]
#[should_panic(expected = "the backup's image holds the batch whole or not at all")]
fn mutant_backup_image_without_a_cut_is_caught() {
    backup_image_holds_a_batch_whole(false);
}
