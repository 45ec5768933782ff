//! The build log (issue 16; store-format/README.md §3): what every wrapper invocation of the last
//! [`MAX_BUILDS`] builds did, hits included, for `rcache report`. A build is one cargo process
//! (`warn_once::build_id`); each invocation adds one small [`BuildUnit`] in the state transaction
//! it already makes to count its outcome, so the log costs a hit two puts and a get, no fsync.
//!
//! Two databases: `builds` (build id, 8 bytes big-endian -> [`BuildSummary`]) and `build_units`
//! (build id ++ start ms ++ pid, all big-endian -> [`BuildUnit`]), so a build's units are one
//! key range in start order. The first unit of a new build drops the least recently active
//! build when [`MAX_BUILDS`] are kept; a build records at most [`MAX_UNITS_PER_BUILD`] units and
//! counts the rest.

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
    /// Units with a name: compiles and runs, not cargo's `rustc -vV` probes. A build of probes
    /// alone (`cargo metadata`) is not what a user calls their last build.
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
            summary.units += 1;
            summary.named_units += u32::from(unit.name.is_some());
            self.units
                .put(wtxn, &unit_key(build, unit), &encode(unit))?;
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
        kept.sort_by_key(|(_, summary)| summary.last_ms);
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

fn unit_key(build: u64, unit: &BuildUnit) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..8].copy_from_slice(&build.to_be_bytes());
    key[8..16].copy_from_slice(&unit.start_ms.to_be_bytes());
    key[16..].copy_from_slice(&unit.pid.to_be_bytes());
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
