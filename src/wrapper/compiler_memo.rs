//! Compiler identities (rustc's and a C compiler's) memoized in the state env, and computed once
//! per store when a build's first processes all need one at the same moment.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keying::KeyError;
use crate::hash::Key;
use crate::key::compiler::{self, CompilerIdentity};
use crate::store::Store;
use crate::store::state::StateUpdate;

/// The compiler's identity, from the memo or computed (and memoized).
pub fn compiler_identity(
    store: &Store,
    compiler_path: &Path,
) -> Result<CompilerIdentity, KeyError> {
    // A rustup proxy's stat data does not pin a toolchain: memoize its real rustc instead.
    let (memoized_path, memo_key) = match compiler::memo_key(compiler_path) {
        Some(key) => (compiler_path.to_path_buf(), Some(key)),
        None => {
            let real = compiler::resolve_proxy(compiler_path)?;
            let key = compiler::memo_key(&real);
            (real, key)
        }
    };
    memoized_identity(store, memo_key, || Ok(compiler::identify(&memoized_path)?))
}

/// How long a process waits for another one computing a compiler's identity before it computes
/// the identity itself.
const IDENTITY_WAIT: Duration = Duration::from_secs(10);

/// A compiler's identity (rustc's or a C compiler's): the state env's memo under `memo_key`, else
/// computed by `identify` and memoized at once, not with the invocation's other updates at its
/// end. Computing a rustc identity hashes about 500 MB, and on a fresh store the first processes
/// of a build all need it at the same moment: they take the store's identity lock, so that one
/// computes it while the others wait and then read its memo (two processes computing it side by
/// side on two cores took 245 ms each, against 150 ms for one). A lock not had in
/// [`IDENTITY_WAIT`], or a memo that cannot be written, only costs computing it again. Without a
/// memo key (stat data that pins no toolchain) it is computed every time.
pub fn memoized_identity<T: Serialize + DeserializeOwned>(
    store: &Store,
    memo_key: Option<Key>,
    identify: impl FnOnce() -> Result<T, KeyError>,
) -> Result<T, KeyError> {
    let Some(memo_key) = memo_key else {
        return identify();
    };
    if let Some(identity) = memoized(store, &memo_key)? {
        return Ok(identity);
    }
    let lock = store.identity_lock(IDENTITY_WAIT);
    if lock.is_ok()
        && let Some(identity) = memoized(store, &memo_key)?
    {
        return Ok(identity);
    }
    let identity = identify()?;
    let memo = StateUpdate {
        compilers: vec![(memo_key, crate::store::entry::encode(&identity))],
        ..StateUpdate::default()
    };
    if let Err(err) = store.state.apply(&memo) {
        tracing::debug!("compiler identity not memoized: {err}");
    }
    Ok(identity)
}

/// The identity memoized under `memo_key`, if any decodes.
fn memoized<T: DeserializeOwned>(store: &Store, memo_key: &Key) -> Result<Option<T>, KeyError> {
    let rtxn = store.state.read_txn()?;
    let memoized = store.state.compiler(&rtxn, memo_key)?;
    Ok(memoized.and_then(|bytes| crate::store::entry::decode::<T>(&bytes).ok()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    #[test]
    fn side_by_side_lookups_compute_an_identity_once_and_memoize_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let computed = AtomicUsize::new(0);
        let identify = || {
            computed.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(200));
            Ok(String::from("compiler 1"))
        };
        let memo_key = Some([7; 32]);
        let identities: Vec<String> = thread::scope(|scope| {
            let lookups: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| memoized_identity(&store, memo_key, identify).unwrap()))
                .collect();
            lookups.into_iter().map(|l| l.join().unwrap()).collect()
        });
        assert_eq!(identities, ["compiler 1"; 3]);
        assert_eq!(computed.load(Ordering::SeqCst), 1);

        // Memoized at once, in the state env: a later lookup computes nothing.
        let again = memoized_identity(&store, memo_key, || -> Result<String, KeyError> {
            panic!("computed again")
        });
        assert_eq!(again.unwrap(), "compiler 1");
        // Without a memo key, computed every time.
        let unpinned = memoized_identity(&store, None, || Ok(String::from("compiler 2")));
        assert_eq!(unpinned.unwrap(), "compiler 2");
    }
}
