//! The batches of one file-based API (OpenAI, Gemini), keyed by the creation number that each
//! batch id encodes, so a lookup by id is a map lookup and listing newest first is a range.
use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::files;

/// A batch the table can hold.
pub(crate) trait TableBatch {
    /// The batch's id as clients see it.
    fn id(&self) -> &str;
    /// The creation number an id encodes (`None`: not an id of this API).
    fn seq_of(id: &str) -> Option<u64>;
    /// Writes the batch's result files if it has finished by `now`.
    fn finish(&mut self, now: Instant, files: &mut files::Store);
}

/// One API's batches.
#[derive(Debug)]
pub(crate) struct BatchTable<B> {
    pub(crate) batches: BTreeMap<u64, B>,
    pub(crate) next_seq: u64,
}

impl<B> Default for BatchTable<B> {
    fn default() -> Self {
        Self {
            batches: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<B: TableBatch> BatchTable<B> {
    /// No batches, but the numbering goes on (an id is never reused).
    pub(crate) fn emptied(&self) -> Self {
        Self {
            batches: BTreeMap::new(),
            next_seq: self.next_seq,
        }
    }

    /// Creates the result files of batches that have finished.
    pub(crate) fn refresh(&mut self, now: Instant, files: &mut files::Store) {
        for b in self.batches.values_mut() {
            b.finish(now, files);
        }
    }

    /// The creation number `id` encodes.
    pub(crate) fn seq_of(id: &str) -> Option<u64> {
        B::seq_of(id)
    }

    /// The batch with this exact id.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut B> {
        let b = self.batches.get_mut(&B::seq_of(id)?)?;
        (b.id() == id).then_some(b)
    }
}
