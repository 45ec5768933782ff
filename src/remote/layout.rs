//! What the remote holds, byte for byte (store-format/README.md §9): object names per backend,
//! and the envelopes around entries and candidates, with their optional signature.
//!
//! Three kinds of object, as in the local store:
//! - blobs, named by the blake3 of their content, holding that content as one zstd frame
//!   ([`super::codec`]);
//! - entries, named by their result key, in an envelope that may carry an HMAC-SHA256 over the
//!   result key and the encoded entry together;
//! - candidates, filed under their invocation key, one object (S3) or one set member (Redis)
//!   each, so that two machines adding candidates for one key at once never lose either; each
//!   names the group (the publishing build) it was published with;
//! - groups: what one build published, in parts appended as it publishes (one object per part
//!   on S3, one list element per part on Redis), read whole by the prefetcher
//!   ([`super::prefetch`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::hash::{Key, hex};
use crate::stats::reason::RemoteErrorReason;
use crate::store::entry::{self, Candidate, Entry};

/// Version of the remote layout; names the `rcache-v4` prefix. A change to the meaning of any
/// remote object bumps it, so that old and new clients never misread each other's objects: a
/// client finds nothing under another version's names (a miss), and writes nothing there.
/// Version 1 held blobs raw; version 2 holds them as zstd frames; version 3 path-independent
/// candidates; version 4 candidates that name their group, and groups (store-format/README.md §8).
pub const REMOTE_FORMAT_VERSION: u32 = 4;

/// How many candidates a lookup reads for one invocation key, newest first.
pub const REMOTE_MAX_CANDIDATES: usize = 16;

/// How many candidates Redis keeps per invocation key (older ones are trimmed on insert).
pub const REDIS_KEPT_CANDIDATES: isize = 64;

/// First bytes of an entry envelope.
const ENTRY_MAGIC: &[u8; 4] = b"RCE1";
/// First bytes of a candidate envelope; the group (32 bytes, zeros for none) follows.
const CANDIDATE_MAGIC: &[u8; 4] = b"RCC2";
/// First bytes of a group part.
const GROUP_PART_MAGIC: &[u8; 4] = b"RCG1";
/// The group of a candidate published outside any group.
const NO_GROUP: Key = [0; 32];
/// How long Redis keeps a group after its last part was added.
pub const REDIS_GROUP_TTL_SECS: u64 = 30 * 24 * 3600;
/// Entry envelope flag: no signature follows.
const UNSIGNED: u8 = 0;
/// Entry envelope flag: a 32-byte HMAC-SHA256 follows.
const SIGNED: u8 = 1;
/// Domain separation of the signed message.
const SIGNATURE_CONTEXT: &[u8] = b"rcache remote entry v1\0";

/// One remote object other than a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Blob(Key),
    Entry(Key),
    /// One part of a group (S3 only: Redis appends parts to one list, [`redis_group_key`]);
    /// named so that the parts of a group list in the order they were added.
    GroupPart {
        group: Key,
        name: String,
    },
    /// A scratch object written and deleted by `rcache remote check`.
    Check(String),
}

/// The common prefix of every name: `rcache-v4`.
pub fn version_prefix() -> String {
    format!("rcache-v{REMOTE_FORMAT_VERSION}")
}

impl Object {
    /// The S3 object path below the configured prefix.
    pub fn s3_path(&self) -> String {
        let root = version_prefix();
        match self {
            Object::Blob(hash) => format!("{root}/blobs/{}", hex(hash)),
            Object::Entry(key) => format!("{root}/entries/{}", hex(key)),
            Object::GroupPart { group, name } => format!("{}{name}", s3_group_dir(group)),
            Object::Check(name) => format!("{root}/check/{name}"),
        }
    }

    /// The Redis key.
    pub fn redis_key(&self) -> String {
        let root = version_prefix();
        match self {
            Object::Blob(hash) => format!("{root}:blob:{}", hex(hash)),
            Object::Entry(key) => format!("{root}:entry:{}", hex(key)),
            Object::GroupPart { group, .. } => redis_group_key(group),
            Object::Check(name) => format!("{root}:check:{name}"),
        }
    }
}

/// The S3 "directory" holding an invocation key's candidates.
pub fn s3_candidates_dir(invocation_key: &Key) -> String {
    format!("{}/candidates/{}/", version_prefix(), hex(invocation_key))
}

/// One candidate's S3 object: the time inverted, so that a listing (ascending) is newest
/// first, then the result key, so that two candidates never share a name.
pub fn s3_candidate_path(invocation_key: &Key, result_key: &Key, created_unix_ms: u64) -> String {
    format!(
        "{}{:016x}-{}",
        s3_candidates_dir(invocation_key),
        u64::MAX - created_unix_ms,
        hex(result_key)
    )
}

/// The Redis sorted set of an invocation key's candidates (score: creation time).
pub fn redis_candidates_key(invocation_key: &Key) -> String {
    format!("{}:candidates:{}", version_prefix(), hex(invocation_key))
}

/// The S3 "directory" holding a group's parts.
pub fn s3_group_dir(group: &Key) -> String {
    format!("{}/groups/{}/", version_prefix(), hex(group))
}

/// The Redis list of a group's parts.
pub fn redis_group_key(group: &Key) -> String {
    format!("{}:group:{}", version_prefix(), hex(group))
}

/// A candidate as the remote holds it: `RCC2`, the group it was published with (32 bytes, zeros
/// for none), then the encoded candidate.
pub fn encode_candidate(candidate: &Candidate, group: Option<&Key>) -> Vec<u8> {
    let mut bytes = CANDIDATE_MAGIC.to_vec();
    bytes.extend(group.unwrap_or(&NO_GROUP));
    bytes.extend(entry::encode(candidate));
    bytes
}

/// A remote candidate and the group it names.
pub fn decode_candidate(bytes: &[u8]) -> Option<(Candidate, Option<Key>)> {
    let rest = bytes.strip_prefix(CANDIDATE_MAGIC)?;
    let group: Key = rest.get(..32)?.try_into().ok()?;
    let candidate = entry::decode(&rest[32..]).ok()?;
    Some((candidate, (group != NO_GROUP).then_some(group)))
}

/// One record of a group: an invocation key and a candidate envelope filed under it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    pub invocation_key: Key,
    pub candidate: Vec<u8>,
}

/// A group part: `RCG1`, then the postcard-encoded records.
pub fn encode_group_part(records: &[GroupRecord]) -> Vec<u8> {
    let mut bytes = GROUP_PART_MAGIC.to_vec();
    bytes.extend(postcard::to_allocvec(records).expect("records encode"));
    bytes
}

pub fn decode_group_part(bytes: &[u8]) -> Option<Vec<GroupRecord>> {
    postcard::from_bytes(bytes.strip_prefix(GROUP_PART_MAGIC)?).ok()
}

/// An entry as the remote holds it: `RCE1`, a flag byte, the HMAC-SHA256 of
/// `context || result key || encoded entry` under `secret` when there is one (flag 1, 32 bytes),
/// then the postcard-encoded entry.
pub fn seal_entry(result_key: &Key, entry: &Entry, secret: Option<&[u8]>) -> Vec<u8> {
    let encoded = entry::encode(entry);
    let mut bytes = ENTRY_MAGIC.to_vec();
    match secret {
        Some(secret) => {
            bytes.push(SIGNED);
            bytes.extend(signature(secret, result_key, &encoded));
        }
        None => bytes.push(UNSIGNED),
    }
    bytes.extend(encoded);
    bytes
}

/// Why a remote entry was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// A secret is configured and the entry carries no signature.
    Unsigned,
    /// A secret is configured and the signature is not its own.
    BadSignature,
    /// Not an entry envelope of this version, or the entry does not decode.
    Garbage,
}

impl Unsealed {
    pub fn reason(self) -> &'static str {
        match self {
            Unsealed::Unsigned => "unsigned",
            Unsealed::BadSignature => "bad_signature",
            Unsealed::Garbage => RemoteErrorReason::BadEntry.as_str(),
        }
    }
}

/// Opens an entry envelope. With a secret, only an entry signed with it for this very result
/// key is accepted; without one, signatures are not checked (an unsigned client trusts the
/// remote, README.md "Trust").
pub fn unseal_entry(
    result_key: &Key,
    bytes: &[u8],
    secret: Option<&[u8]>,
) -> Result<Entry, Unsealed> {
    let rest = bytes.strip_prefix(ENTRY_MAGIC).ok_or(Unsealed::Garbage)?;
    let (&flag, rest) = rest.split_first().ok_or(Unsealed::Garbage)?;
    let (tag, encoded) = match flag {
        UNSIGNED => (None, rest),
        SIGNED if rest.len() >= 32 => {
            let (tag, encoded) = rest.split_at(32);
            (Some(tag), encoded)
        }
        _ => return Err(Unsealed::Garbage),
    };
    if let Some(secret) = secret {
        let tag = tag.ok_or(Unsealed::Unsigned)?;
        keyed_mac(secret, result_key, encoded)
            .verify_slice(tag)
            .map_err(|_| Unsealed::BadSignature)?;
    }
    entry::decode(encoded).map_err(|_| Unsealed::Garbage)
}

fn keyed_mac(secret: &[u8], result_key: &Key, encoded: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(SIGNATURE_CONTEXT);
    mac.update(result_key);
    mac.update(encoded);
    mac
}

fn signature(secret: &[u8], result_key: &Key, encoded: &[u8]) -> [u8; 32] {
    keyed_mac(secret, result_key, encoded)
        .finalize()
        .into_bytes()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::OutputKind;
    use crate::store::entry::{EnvRecord, InputRecord, OutputRecord};

    fn entry() -> Entry {
        Entry {
            outputs: vec![OutputRecord {
                name: "libx.rlib".into(),
                kind: OutputKind::Rlib,
                blob: [3; 32],
                size: 9,
                mode: 0o644,
            }],
            stdout: vec![],
            stderr: b"warning".to_vec(),
            out_dir: b"target/debug/deps".to_vec(),
            compile_ms: 12,
            created_unix_ms: 34,
        }
    }

    #[test]
    fn signed_entries_open_only_with_their_secret_and_result_key() {
        let key = [1; 32];
        let sealed = seal_entry(&key, &entry(), Some(b"k1"));
        assert_eq!(unseal_entry(&key, &sealed, Some(b"k1")), Ok(entry()));
        assert_eq!(
            unseal_entry(&key, &sealed, Some(b"k2")),
            Err(Unsealed::BadSignature)
        );
        // The same bytes filed under another result key are refused: a signature binds both.
        assert_eq!(
            unseal_entry(&[2; 32], &sealed, Some(b"k1")),
            Err(Unsealed::BadSignature)
        );
        // A client without a secret does not check.
        assert_eq!(unseal_entry(&key, &sealed, None), Ok(entry()));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            unseal_entry(&key, &flipped, Some(b"k1")),
            Err(Unsealed::BadSignature)
        );
    }

    #[test]
    fn unsigned_entries_are_refused_by_a_client_with_a_secret() {
        let key = [1; 32];
        let sealed = seal_entry(&key, &entry(), None);
        assert_eq!(unseal_entry(&key, &sealed, None), Ok(entry()));
        assert_eq!(
            unseal_entry(&key, &sealed, Some(b"k1")),
            Err(Unsealed::Unsigned)
        );
        assert_eq!(unseal_entry(&key, b"RCE1", None), Err(Unsealed::Garbage));
        assert_eq!(unseal_entry(&key, b"junk", None), Err(Unsealed::Garbage));
    }

    #[test]
    fn candidate_names_list_newest_first_and_round_trip() {
        let invocation = [9; 32];
        let older = s3_candidate_path(&invocation, &[1; 32], 1_000);
        let newer = s3_candidate_path(&invocation, &[2; 32], 2_000);
        assert!(newer < older);
        assert!(older.starts_with(&s3_candidates_dir(&invocation)));
        let candidate = Candidate {
            inputs: vec![InputRecord {
                path: b"src/lib.rs".to_vec(),
                hash: [4; 32],
            }],
            env_deps: vec![EnvRecord {
                name: "X".into(),
                value: None,
            }],
            result_key: [5; 32],
            path_bound: None,
        };
        let bytes = encode_candidate(&candidate, None);
        assert_eq!(decode_candidate(&bytes), Some((candidate.clone(), None)));
        assert_eq!(decode_candidate(&bytes[4..]), None);
        let grouped = encode_candidate(&candidate, Some(&[7; 32]));
        assert_eq!(decode_candidate(&grouped), Some((candidate, Some([7; 32]))));
        assert_eq!(decode_candidate(&grouped[..30]), None);
        assert_eq!(
            Object::Blob([0xab; 32]).s3_path().len(),
            "rcache-v4/blobs/".len() + 64
        );
        assert!(
            Object::Entry([0; 32])
                .redis_key()
                .starts_with("rcache-v4:entry:")
        );
        // Every name carries the version: a version-1 remote's objects are never read.
        assert!(s3_candidates_dir(&invocation).starts_with("rcache-v4/candidates/"));
        assert!(redis_candidates_key(&invocation).starts_with("rcache-v4:candidates:"));
        assert!(
            Object::Check("x".into())
                .s3_path()
                .starts_with("rcache-v4/")
        );
    }

    #[test]
    fn group_parts_round_trip_and_refuse_other_bytes() {
        let records = vec![
            GroupRecord {
                invocation_key: [1; 32],
                candidate: b"RCC2 one".to_vec(),
            },
            GroupRecord {
                invocation_key: [2; 32],
                candidate: b"RCC2 two".to_vec(),
            },
        ];
        let part = encode_group_part(&records);
        assert_eq!(decode_group_part(&part), Some(records));
        assert_eq!(decode_group_part(&part[4..]), None);
        assert_eq!(decode_group_part(b"RCG1\xff\xff"), None);
        let group = [0xcd; 32];
        let object = Object::GroupPart {
            group,
            name: "0001-x".into(),
        };
        assert_eq!(
            object.s3_path(),
            format!("rcache-v4/groups/{}/0001-x", hex(&group))
        );
        assert_eq!(object.redis_key(), redis_group_key(&group));
    }
}
