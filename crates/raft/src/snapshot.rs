//! Snapshot files: a consistent copy of one group's records (its range of
//! `data_kv`, or of `system_data` for the system group) plus its applied
//! state.
//!
//! Layout: a sequence of length-delimited protobuf messages — one
//! [`pb::SnapshotHeader`] then [`pb::KvChunk`]s of at most
//! [`SNAPSHOT_CHUNK_BYTES`] each. A file is written under a temporary name,
//! fsynced, then renamed, so a crash never leaves a half-written snapshot
//! under a real name.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use seshat_kv::keys;
use seshat_storage::Store;

use crate::codec::{self, CodecError, RECORD_VERSION};
use crate::layout::{GroupLayout, StateName};
use crate::pb;

/// Target size of one chunk of keys and values, in bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest message accepted when reading a snapshot file (a chunk plus one
/// oversized entry), checked before allocating.
pub const MAX_SNAPSHOT_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// File name suffix of complete snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snap";
/// Directory, under the snapshot directory, of snapshots being received.
pub const INCOMING_DIR: &str = "incoming";

/// Where snapshots being received from a leader are written.
pub fn incoming_dir(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join(INCOMING_DIR)
}

/// Removes every file under [`incoming_dir`]: what a transfer cut short by
/// a crash left. Called at start, before any transfer can begin; returns
/// how many files went.
pub fn clear_incoming(snapshot_dir: &Path) -> io::Result<usize> {
    let dir = incoming_dir(snapshot_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            fs::remove_file(&path)?;
            tracing::info!(path = %path.display(), "removed an unfinished incoming snapshot");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Bytes an unprivileged writer may still use on the file system of
/// `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// A snapshot on disk, as handed to and from openraft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file's path.
    pub path: PathBuf,
}

/// Writes a snapshot of `layout`'s group in `store` as of now into `dir`
/// and returns its header and path. Reads go through one RocksDB
/// snapshot, so the data and the applied state match exactly while writes
/// continue.
pub fn write_snapshot(
    store: &Store,
    layout: GroupLayout,
    dir: &Path,
) -> io::Result<(pb::SnapshotHeader, PathBuf)> {
    fs::create_dir_all(dir)?;
    let view = store.snapshot();
    let applied = match view
        .get(layout.state_cf(), &layout.state_key(StateName::Applied))
        .map_err(io::Error::other)?
    {
        Some(b) => codec::decode_applied(&b)?,
        None => pb::AppliedRecord {
            version: RECORD_VERSION,
            ..Default::default()
        },
    };
    let index = applied.last_applied.as_ref().map_or(0, |l| l.index);
    let term = applied.last_applied.as_ref().map_or(0, |l| l.term);
    let id = format!("{index:020}-{term:020}");
    let header = pb::SnapshotHeader {
        version: RECORD_VERSION,
        snapshot_id: id.clone(),
        applied: Some(applied),
        group: layout.group(),
    };
    let tmp = dir.join(format!("{id}{SNAPSHOT_SUFFIX}.tmp"));
    let path = dir.join(format!("{id}{SNAPSHOT_SUFFIX}"));
    let mut out = BufWriter::new(File::create(&tmp)?);
    write_message(&mut out, &header)?;
    let mut chunk = pb::KvChunk::default();
    let mut chunk_bytes = 0usize;
    let mut write_err: Option<io::Error> = None;
    let (start, end) = layout.data_range();
    view.for_each(layout.data_cf(), &start, &end, |k, v| {
        chunk.keys.push(bytes::Bytes::copy_from_slice(k));
        chunk.values.push(bytes::Bytes::copy_from_slice(v));
        chunk_bytes = chunk_bytes.saturating_add(k.len() + v.len());
        if chunk_bytes >= SNAPSHOT_CHUNK_BYTES {
            if let Err(e) = write_message(&mut out, &chunk) {
                write_err = Some(e);
                return false;
            }
            chunk = pb::KvChunk::default();
            chunk_bytes = 0;
        }
        true
    })
    .map_err(io::Error::other)?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if !chunk.keys.is_empty() {
        write_message(&mut out, &chunk)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok((header, path))
}

fn write_message<W: Write, M: Message>(out: &mut W, msg: &M) -> io::Result<()> {
    let bytes = msg.encode_length_delimited_to_vec();
    out.write_all(&bytes)
}

/// Reads a snapshot file message by message, in bounded memory.
pub struct SnapshotReader {
    input: BufReader<File>,
    /// The file's header.
    pub header: pb::SnapshotHeader,
}

impl SnapshotReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut input = BufReader::new(File::open(path)?);
        let header: pb::SnapshotHeader = match read_message(&mut input, "snapshot header")? {
            Some(h) => h,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "empty snapshot file",
                ));
            }
        };
        if header.version != RECORD_VERSION {
            return Err(CodecError::Version {
                what: "snapshot header",
                version: header.version,
            }
            .into());
        }
        Ok(Self { input, header })
    }

    /// The next chunk of keys and values, or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<pb::KvChunk>> {
        let chunk: Option<pb::KvChunk> = read_message(&mut self.input, "snapshot chunk")?;
        if let Some(c) = &chunk {
            if c.keys.len() != c.values.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "snapshot chunk has {} keys and {} values",
                        c.keys.len(),
                        c.values.len()
                    ),
                ));
            }
        }
        Ok(chunk)
    }
}

fn read_varint<R: Read>(input: &mut R) -> io::Result<Option<u64>> {
    let mut value: u64 = 0;
    for i in 0..10u32 {
        let mut byte = [0u8; 1];
        match input.read(&mut byte)? {
            0 if i == 0 => return Ok(None),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated length",
                ))
            }
            _ => {}
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "length varint too long",
    ))
}

fn read_message<R: Read, M: Message + Default>(
    input: &mut R,
    what: &'static str,
) -> io::Result<Option<M>> {
    let Some(len) = read_varint(input)? else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_SNAPSHOT_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} of {len} bytes exceeds {MAX_SNAPSHOT_MESSAGE_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    M::decode(buf.as_slice())
        .map(Some)
        .map_err(|source| CodecError::Protobuf { what, source }.into())
}

/// The newest complete snapshot file in `dir`, if any.
pub fn newest_snapshot(dir: &Path) -> io::Result<Option<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut best: Option<PathBuf> = None;
    for entry in entries {
        let path = entry?.path();
        let is_snap = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(SNAPSHOT_SUFFIX));
        // Names are zero-padded index-term, so the largest name is newest.
        if is_snap && best.as_ref().is_none_or(|b| path > *b) {
            best = Some(path);
        }
    }
    Ok(best)
}

/// Removes snapshot files and leftovers in `dir` other than `keep`.
pub fn remove_other_snapshots(dir: &Path, keep: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path != keep && path.is_file() {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove old snapshot");
            }
        }
    }
    Ok(())
}

/// Checks that a snapshot's header names `layout`'s group.
pub fn check_group(header: &pb::SnapshotHeader, layout: GroupLayout) -> io::Result<()> {
    if header.group != layout.group() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot of group {} offered to group {}",
                header.group,
                layout.group()
            ),
        ));
    }
    Ok(())
}

/// A snapshot key outside its group's range.
pub(crate) fn key_outside(layout: GroupLayout) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot key outside group {}", layout.group()),
    )
}

/// Reads a whole snapshot file and checks it: framing, versions, that it
/// is `layout`'s group's and every key lies in that group's range, and
/// that its header describes the state and membership `meta` announces.
/// Used on snapshots received from peers before they are installed.
pub fn validate_file(
    path: &Path,
    meta: &crate::types::SnapshotMeta,
    layout: GroupLayout,
) -> io::Result<()> {
    let mut reader = SnapshotReader::open(path)?;
    check_group(&reader.header, layout)?;
    let id = &reader.header.snapshot_id;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad snapshot id {id:?}"),
        ));
    }
    // Read exactly as the install will read it: a header the install
    // could not decode would fail there, and stop the Raft core.
    let held = crate::state_machine::meta_from_header(&reader.header)?;
    if held != *meta {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot holds {held:?}, announced {meta:?}"),
        ));
    }
    let applied = reader.header.applied.clone().unwrap_or_default();
    let mut key_count: u64 = 0;
    while let Some(chunk) = reader.next_chunk()? {
        if chunk.keys.iter().any(|k| !layout.owns_data_key(k)) {
            return Err(key_outside(layout));
        }
        let metas = chunk
            .keys
            .iter()
            .filter(|k| keys::parse_meta_key(layout.group(), k).is_some())
            .count();
        key_count = key_count.saturating_add(metas as u64);
    }
    if key_count != applied.key_count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot holds {key_count} keys, its header says {}",
                applied.key_count
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
    use crate::SeshatNode;
    use std::collections::BTreeMap;

    fn data_group() -> GroupLayout {
        GroupLayout::new(1).unwrap()
    }

    fn membership() -> Membership {
        let nodes: BTreeMap<u64, SeshatNode> = [(1, SeshatNode::default())].into();
        Membership::new(vec![[1].into_iter().collect()], nodes).unwrap()
    }

    /// A file holding `header` only (no keys).
    fn file_with(dir: &Path, header: &pb::SnapshotHeader) -> PathBuf {
        let path = dir.join("s.part");
        let mut out = File::create(&path).unwrap();
        write_message(&mut out, header).unwrap();
        path
    }

    fn header(membership: pb::Membership) -> pb::SnapshotHeader {
        pb::SnapshotHeader {
            version: RECORD_VERSION,
            snapshot_id: "7-1".into(),
            applied: Some(pb::AppliedRecord {
                version: RECORD_VERSION,
                last_applied: Some(pb::LogId {
                    term: 1,
                    leader_node_id: 1,
                    index: 7,
                }),
                membership_log_id: Some(pb::LogId {
                    term: 0,
                    leader_node_id: 1,
                    index: 0,
                }),
                membership: Some(membership),
                key_count: 0,
                last_now_ms: 0,
                expiring_count: 0,
            }),
            group: 1,
        }
    }

    fn announced() -> SnapshotMeta {
        let log_id = |term, index| LogId::new(CommittedLeaderId { term, node_id: 1 }, index);
        SnapshotMeta {
            last_log_id: Some(log_id(1, 7)),
            last_membership: StoredMembership::new(Some(log_id(0, 0)), membership()),
        }
    }

    #[test]
    fn a_file_matching_its_announcement_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &header(codec::membership_to_pb(&membership())));
        validate_file(&path, &announced(), data_group()).unwrap();
    }

    /// Regression (issue 18): only the header's last log id was compared,
    /// so a header whose membership the install cannot decode (a voter
    /// without an address) passed, and the install's error stopped the
    /// Raft core.
    #[test]
    fn issue_18_a_header_the_install_cannot_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let unreadable = pb::Membership {
            configs: vec![pb::NodeIdSet { node_ids: vec![1] }],
            nodes: Default::default(),
        };
        let path = file_with(dir.path(), &header(unreadable));
        assert!(validate_file(&path, &announced(), data_group()).is_err());
    }

    /// A snapshot belongs to one group: one naming another group, or
    /// holding a key outside its group's range, is refused before it is
    /// installed.
    #[test]
    fn a_snapshot_of_another_group_or_with_a_foreign_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), &header(codec::membership_to_pb(&membership())));
        let two = GroupLayout::new(2).unwrap();
        let err = validate_file(&path, &announced(), two).unwrap_err();
        assert!(
            err.to_string().contains("group 1 offered to group 2"),
            "{err}"
        );
        // Group 1's header, a key of group 2 inside.
        let mut out = fs::OpenOptions::new().append(true).open(&path).unwrap();
        let chunk = pb::KvChunk {
            keys: vec![keys::meta_key(2, b"k").into()],
            values: vec![bytes::Bytes::from_static(b"v")],
        };
        write_message(&mut out, &chunk).unwrap();
        drop(out);
        let err = validate_file(&path, &announced(), data_group()).unwrap_err();
        assert!(err.to_string().contains("outside group 1"), "{err}");
    }

    #[test]
    fn a_header_with_another_membership_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let nodes: BTreeMap<u64, SeshatNode> = [1, 2].map(|id| (id, SeshatNode::default())).into();
        let other = Membership::new(vec![[1, 2].into_iter().collect()], nodes).unwrap();
        let path = file_with(dir.path(), &header(codec::membership_to_pb(&other)));
        assert!(validate_file(&path, &announced(), data_group()).is_err());
    }
}
