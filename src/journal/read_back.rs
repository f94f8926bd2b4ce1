//! The bytes of inline writes read back from the journals, for a write-back
//! whose writes have let their own copies go (`protocol::WriteBack`).

use super::frame::{self, FileKind, Tear};
use super::{Entry, MetaFiles, files};
use crate::bytes::Bytes;
use crate::record::{ExtentId, Location};
use std::collections::{BTreeSet, HashMap};

/// An inline write's proposal: its extent and the version its record was
/// proposed at, which its journal record carries.
pub(crate) type Proposal = (ExtentId, u64);

/// The bytes each of `wanted` carried in its inline journal record, with the
/// location the record names, from every journal among `names` that `files`
/// can read. Best effort, as the rewrite it serves: a journal that cannot be
/// read or scanned is skipped, and a proposal found in none is left out.
/// Reads each journal whole, one at a time: at most about twice
/// `journal_max_bytes` in memory, once per failed device sync (a device file
/// whose sync failed stays failed until a reopen).
pub(crate) fn inline_data(
    names: &[String],
    files: &mut dyn MetaFiles,
    wanted: &BTreeSet<Proposal>,
) -> HashMap<Proposal, (Location, Bytes)> {
    let mut found = HashMap::new();
    for name in names.iter().filter(|n| files::journal_number(n).is_some()) {
        let Ok(Some(bytes)) = files.read(name) else {
            continue;
        };
        let Ok(scan) = frame::scan(&bytes, name, FileKind::Journal, Tear::Unsynced) else {
            continue;
        };
        for (_, entry) in scan.entries(&bytes) {
            if let Entry::Inline(record, data) = entry
                && wanted.contains(&(record.extent, record.version))
            {
                found.insert((record.extent, record.version), (record.location, data));
            }
        }
    }
    found
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::journal::tests::put;
    use crate::journal::{HEADER_LEN, WholeFiles, encode_group};
    use crate::record::checksum;

    /// A journal file of `entries` (numbered from 1), as the writer writes one.
    fn journal(number: u64, entries: &[Entry]) -> Vec<u8> {
        let mut bytes = frame::encode_header(FileKind::Journal, number, 1).to_vec();
        assert_eq!(bytes.len(), HEADER_LEN);
        let numbered: Vec<(u64, Entry)> = (entries.iter().enumerate())
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect();
        bytes.extend_from_slice(&encode_group(bytes.len() as u64, &numbered));
        bytes
    }

    fn inline(extent: u64, version: u64, offset: u64) -> Entry {
        let Entry::Put(mut record) = put(extent, version) else {
            unreachable!("put makes a Put");
        };
        record.version = version;
        record.location = Location::new(0, offset, 16);
        let data = [extent.to_le_bytes(), version.to_le_bytes()].concat();
        // A frame whose data does not match its record's checksum is no frame.
        record.checksum = checksum(record.extent, record.generation, &data);
        Entry::Inline(record, Bytes::from(data))
    }

    #[test]
    fn each_wanted_proposal_is_found_in_whichever_journal_holds_it() {
        let dir = HashMap::from([
            (
                files::journal(3),
                journal(3, &[inline(1, 4, 0), put(9, 1), inline(2, 7, 16)]),
            ),
            (files::journal(4), journal(4, &[inline(5, 2, 32)])),
            // Not a journal: never read.
            (files::checkpoint(3), b"not frames".to_vec()),
        ]);
        let names: Vec<String> = dir.keys().cloned().collect();
        let mut files = WholeFiles::new(|name: &str| Ok(dir.get(name).cloned()));
        let wanted = BTreeSet::from([(ExtentId(1), 4), (ExtentId(5), 2), (ExtentId(2), 6)]);
        let found = inline_data(&names, &mut files, &wanted);
        let mut got: Vec<_> = found.into_iter().collect();
        got.sort_by_key(|(p, _)| *p);
        assert_eq!(
            got,
            vec![
                (
                    (ExtentId(1), 4),
                    (Location::new(0, 0, 16), inline_bytes(1, 4))
                ),
                (
                    (ExtentId(5), 2),
                    (Location::new(0, 32, 16), inline_bytes(5, 2))
                ),
            ],
            "extent 2's version 6 was never journaled"
        );
    }

    fn inline_bytes(extent: u64, version: u64) -> Bytes {
        Bytes::from([extent.to_le_bytes(), version.to_le_bytes()].concat())
    }
}
