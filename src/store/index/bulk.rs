//! Loading many compiles in one write transaction, for benchmarks and tests that need a large
//! index quickly (`benches/gc.rs`). The wrapper stores one compile per transaction, with the
//! checks of [`Index::commit_compile`]; this loader trusts its caller instead.

use super::Index;
use crate::hash::Key;
use crate::store::StoreError;
use crate::store::entry::{self, Candidate, Entry, Manifest};

impl Index {
    /// Adds each (invocation key, candidate, entry) as its own manifest and entry, counting
    /// the entry's blobs. The caller guarantees that every blob file exists and that no key is
    /// already present (nothing is replaced or released).
    pub fn load_compiles(&self, compiles: &[(Key, Candidate, Entry)]) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        for (invocation_key, candidate, compiled) in compiles {
            self.entries
                .put(&mut wtxn, &candidate.result_key, &entry::encode(compiled))?;
            for output in compiled.outputs.iter().filter(|o| o.blob().is_some()) {
                self.add_blob_ref(&mut wtxn, &output.blob, output.size)?;
            }
            let manifest = Manifest {
                candidates: vec![candidate.clone()],
            };
            self.manifests
                .put(&mut wtxn, invocation_key, &entry::encode(&manifest))?;
        }
        wtxn.commit()?;
        Ok(())
    }
}
