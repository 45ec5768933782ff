//! The build log (issue 16; store-format/README.md §3): what every wrapper invocation of the last
//! [`MAX_BUILDS`] builds did, hits included, for `rcache report`. A build is one cargo process
//! (`warn_once::build_id`); each invocation adds one small [`BuildUnit`] in the state transaction
//! it already makes to count its outcome, so the log costs a hit two puts and a get, no fsync.
//!
//! Two databases: `builds` (build id, 8 bytes big-endian -> [`BuildSummary`]) and `build_units`
//! (build id ++ start ms ++ pid ++ the unit's number in its build, all big-endian ->
//! [`BuildUnit`]), so a build's units are one key range in start order. The first unit of a new
//! build makes room when [`MAX_BUILDS`] are kept: builds of probes alone go first, then the least
//! recently active. A build records at most [`MAX_UNITS_PER_BUILD`] units and counts the rest.

use std::ops::Bound;

use heed::{RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::entry::{decode, encode};
use super::lmdb::Db;

/// Builds kept.
pub const MAX_BUILDS: usize = 32;

/// Units recorded per build; more are counted in [`BuildSummary::dropped`].
pub const MAX_UNITS_PER_BUILD: u32 = 20_000;

/// One wrapper invocation of a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildUnit {
    /// When the invocation started, unix ms.
    pub start_ms: u64,
    /// The wrapper's own time, from its start to its outcome, in microseconds.
    pub duration_us: u64,
    pub pid: u32,
    /// `rustc`, `cc` or `build_script_run`.
    pub kind: String,
    /// The crate, the C source, or the build script's package; `None` for a probe (`rustc -vV`).
    pub name: Option<String>,
    /// The package cargo names (`CARGO_PKG_NAME`), when cargo started the invocation.
    pub package: Option<String>,
    pub crate_types: Vec<String>,
    /// `hit`, `miss`, `passthrough` or `error`.
    pub outcome: String,
    /// The not-stored, passthrough or error reason.
    pub reason: Option<String>,
    /// Counted under `build_scripts.` in the stats, apart from the compile totals.
    pub build_script_run: bool,
    /// A hit's time saved (what the compile it replaced took), ms.
    pub saved_ms: u64,
    /// What the remote said, when it was asked.
    pub remote: Option<String>,
    /// Why the unit is keyed with its real paths, when it is.
    pub path_bound: Option<String>,
    /// The invocation's working directory.
    pub cwd: String,
}

/// A build's extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    /// The first unit's start, unix ms.
    pub first_ms: u64,
    /// The latest end of a unit, unix ms.
    pub last_ms: u64,
    /// Units recorded.
    pub units: u32,
    /// Units that compiled or ran something (a name, and not cargo's `rustc -vV` and `--print`
    /// probes): a build of probes alone (`cargo metadata`) is not what a user calls a build.
    pub named_units: u32,
    /// Units beyond [`MAX_UNITS_PER_BUILD`], counted but not recorded.
    pub dropped: u32,
}

/// The two databases of the log.
#[derive(Clone, Copy)]
pub struct BuildLog {
    pub(super) builds: Db,
    pub(super) units: Db,
}

impl BuildLog {
    /// Adds `unit` to `build`, in the caller's write transaction.
    pub fn add(&self, wtxn: &mut RwTxn, build: u64, unit: &BuildUnit) -> Result<(), StoreError> {
        let id = build.to_be_bytes();
        // A summary that does not decode starts the build afresh; its units stay in its range
        // and are read with the new ones.
        let known = self.builds.get(wtxn, &id)?.and_then(|b| decode(b).ok());
        let mut summary = match known {
            Some(summary) => summary,
            None => {
                self.make_room(wtxn)?;
                BuildSummary {
                    first_ms: unit.start_ms,
                    ..BuildSummary::default()
                }
            }
        };
        let end_ms = unit.start_ms + unit.duration_us / 1000;
        summary.first_ms = summary.first_ms.min(unit.start_ms);
        summary.last_ms = summary.last_ms.max(end_ms);
        if summary.units >= MAX_UNITS_PER_BUILD {
            summary.dropped = summary.dropped.saturating_add(1);
        } else {
            let key = unit_key(build, unit, summary.units);
            summary.units += 1;
            summary.named_units += u32::from(is_real(unit));
            self.units.put(wtxn, &key, &encode(unit))?;
        }
        self.builds.put(wtxn, &id, &encode(&summary))?;
        Ok(())
    }

    /// Drops the least recently active builds until a new one fits.
    fn make_room(&self, wtxn: &mut RwTxn) -> Result<(), StoreError> {
        let mut kept = self.summaries(wtxn)?;
        if kept.len() < MAX_BUILDS {
            return Ok(());
        }
        kept.sort_by_key(|(_, summary)| (summary.named_units > 0, summary.last_ms));
        for (build, _) in &kept[..=kept.len() - MAX_BUILDS] {
            self.builds.delete(wtxn, &build.to_be_bytes())?;
            self.units
                .delete_range(wtxn, &UnitRange::of(*build).bounds())?;
        }
        Ok(())
    }

    /// Every build kept, with its summary (an undecodable summary reads as an empty build).
    pub fn summaries(
        &self,
        rtxn: &RoTxn<WithoutTls>,
    ) -> Result<Vec<(u64, BuildSummary)>, StoreError> {
        let mut all = Vec::new();
        for item in self.builds.iter(rtxn)? {
            let (id, bytes) = item?;
            let Ok(id) = <[u8; 8]>::try_from(id) else {
                continue;
            };
            all.push((u64::from_be_bytes(id), decode(bytes).unwrap_or_default()));
        }
        Ok(all)
    }

    /// A build's units in start order (those that decode).
    pub fn units(
        &self,
        rtxn: &RoTxn<WithoutTls>,
        build: u64,
    ) -> Result<Vec<BuildUnit>, StoreError> {
        let mut all = Vec::new();
        let range = UnitRange::of(build);
        for item in self.units.range(rtxn, &range.bounds())? {
            let (_, bytes) = item?;
            if let Ok(unit) = decode(bytes) {
                all.push(unit);
            }
        }
        Ok(all)
    }

    /// Forgets every build (`rcache clear`).
    pub fn clear(&self, wtxn: &mut RwTxn) -> Result<(), StoreError> {
        self.builds.clear(wtxn)?;
        self.units.clear(wtxn)?;
        Ok(())
    }
}

/// A unit that compiled or ran something: it has a name and is not a probe.
fn is_real(unit: &BuildUnit) -> bool {
    unit.name.is_some() && unit.reason.as_deref() != Some("probe")
}

/// A unit's key; `number` (its place in the build) keeps two records of one process in one ms
/// apart (an invocation that passes through by exec'ing rcache again).
fn unit_key(build: u64, unit: &BuildUnit, number: u32) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&build.to_be_bytes());
    key[8..16].copy_from_slice(&unit.start_ms.to_be_bytes());
    key[16..20].copy_from_slice(&unit.pid.to_be_bytes());
    key[20..].copy_from_slice(&number.to_be_bytes());
    key
}

/// The key range of one build's units: from its id to the next id.
struct UnitRange {
    start: [u8; 8],
    end: Option<[u8; 8]>,
}

impl UnitRange {
    fn of(build: u64) -> UnitRange {
        UnitRange {
            start: build.to_be_bytes(),
            end: build.checked_add(1).map(u64::to_be_bytes),
        }
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        let end = match &self.end {
            Some(end) => Bound::Excluded(&end[..]),
            None => Bound::Unbounded,
        };
        (Bound::Included(&self.start[..]), end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::state::StateUpdate;

    fn unit(start_ms: u64, name: Option<&str>, reason: Option<&str>) -> BuildUnit {
        BuildUnit {
            start_ms,
            duration_us: 1000,
            pid: 7,
            kind: "rustc".into(),
            name: name.map(str::to_string),
            package: None,
            crate_types: vec![],
            outcome: if reason.is_some() {
                "passthrough"
            } else {
                "hit"
            }
            .into(),
            reason: reason.map(str::to_string),
            build_script_run: false,
            saved_ms: 0,
            remote: None,
            path_bound: None,
            cwd: "/ws".into(),
        }
    }

    fn add(store: &Store, build: u64, unit: BuildUnit) {
        let update = StateUpdate {
            build_units: vec![(build, unit)],
            ..StateUpdate::default()
        };
        store.state.apply(&update).unwrap();
    }

    fn kept(store: &Store) -> Vec<u64> {
        store
            .state
            .builds()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn builds_are_key_ranges_of_their_own_up_to_the_edges_of_u64() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for build in [0, 1, u64::MAX - 1, u64::MAX] {
            // Two records of one process in one ms stay two.
            add(&store, build, unit(5, Some("a"), None));
            add(&store, build, unit(5, Some("b"), None));
        }
        for build in [0, 1, u64::MAX - 1, u64::MAX] {
            let units = store.state.build_units(build).unwrap();
            let names: Vec<_> = units.iter().map(|u| u.name.clone().unwrap()).collect();
            assert_eq!(names, ["a", "b"], "build {build}");
        }
    }

    #[test]
    fn a_new_build_evicts_probe_only_builds_first_then_the_least_recent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Build 0 is the oldest and the only real build; the others are probes, more recent.
        add(&store, 0, unit(1, Some("real"), None));
        for build in 1..MAX_BUILDS as u64 {
            add(&store, build, unit(100 + build, Some("___"), Some("probe")));
        }
        let summaries = store.state.builds().unwrap();
        assert_eq!(summaries.len(), MAX_BUILDS);
        assert!(
            summaries
                .iter()
                .all(|(id, s)| s.named_units == u32::from(*id == 0))
        );
        add(&store, 1000, unit(1000, Some("new"), None));
        let after = kept(&store);
        assert_eq!(after.len(), MAX_BUILDS);
        assert!(after.contains(&0) && after.contains(&1000) && !after.contains(&1));
        assert!(
            store.state.build_units(1).unwrap().is_empty(),
            "its units go too"
        );
        // Once only real builds are kept, the least recently active goes first.
        for build in 2000..2000 + MAX_BUILDS as u64 {
            add(&store, build, unit(build, Some("x"), None));
        }
        let after = kept(&store);
        assert_eq!(after.len(), MAX_BUILDS);
        assert!(!after.contains(&0) && !after.contains(&1000));
    }
}
