//! The system group's cluster records: what the cluster is made of,
//! replicated by the system group (id 0) and read by every node from its
//! replica.
//!
//! Two records, in the system group's reserved namespace
//! ([`seshat_kv::keys::system_key`]): [`CLUSTER_RECORD`], the layout the
//! cluster was bootstrapped with (members, shards, replicas — the text
//! each node also records locally), and [`SLOTS_RECORD`], the system table
//! of [`seshat_migration`]: the slot map, its version and the migrations
//! in flight. Both are written once, by the first
//! [`SystemWrite::Bootstrap`] to apply; resharding steps
//! ([`SystemWrite::Step`], see [`crate::migration`]) change the system
//! table through the same log.

use bytes::Bytes;
use seshat_kv::keys::SYSTEM_GROUP;
use seshat_kv::{Keyspace, KvError, RawKv, SystemWrite};
use seshat_migration::SystemTable;
use seshat_protocol_resp::Frame;

/// Name of the layout record.
pub const CLUSTER_RECORD: &[u8] = b"cluster";
/// Name of the system table record (slot map, version, migrations).
pub const SLOTS_RECORD: &[u8] = b"slots";

/// Applies a system write. A bootstrap replies `:1` when it recorded the
/// metadata, `:0` when an earlier one had; a step replies as
/// [`crate::migration`] applies it. An error reply (and no change) on a
/// group other than the system group or an unreadable slot table.
pub fn apply<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
    write: &SystemWrite,
) -> Result<Frame, KvError> {
    if db.group() != SYSTEM_GROUP {
        return Ok(Frame::error(format!(
            "ERR cluster metadata belongs to the system group, not group {}",
            db.group()
        )));
    }
    match write {
        SystemWrite::Bootstrap { cluster, slots } => {
            if let Err(e) = SystemTable::decode(slots) {
                return Ok(Frame::error(format!("ERR unreadable slot table: {e}")));
            }
            if db.system_record(CLUSTER_RECORD)?.is_some() {
                return Ok(Frame::Integer(0));
            }
            db.put_system_record(CLUSTER_RECORD, cluster)?;
            db.put_system_record(SLOTS_RECORD, slots)?;
            Ok(Frame::Integer(1))
        }
        SystemWrite::Step(step) => crate::migration::apply_system_step(db, step),
        SystemWrite::Member(op) => crate::members::apply(db, op),
        SystemWrite::NodeBooted { node, instance } => {
            let name = node_record(*node);
            match db.system_record(&name)? {
                None => {
                    db.put_system_record(&name, &instance.to_be_bytes())?;
                    Ok(Frame::Integer(1))
                }
                Some(v) if v.as_ref() == instance.to_be_bytes() => Ok(Frame::Integer(0)),
                Some(_) => Ok(Frame::error(format!(
                    "ERR node {node} first started with another data directory: a node whose \
                     data was lost cannot rejoin under its old id"
                ))),
            }
        }
    }
}

/// The name of node `node`'s boot record (the random id of the data
/// directory it first started with, 8 bytes big-endian).
pub fn node_record(node: u64) -> Vec<u8> {
    format!("node/{node}").into_bytes()
}

/// The data directory node `node` first started with, as recorded.
pub fn node_instance<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
    node: u64,
) -> Result<Option<u64>, KvError> {
    let Some(v) = db.system_record(&node_record(node))? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = v
        .as_ref()
        .try_into()
        .map_err(|_| KvError::Corrupt(format!("boot record of node {node} is not 8 bytes")))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// The recorded layout and system table, if the bootstrap has applied.
pub fn records<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
) -> Result<Option<(Bytes, SystemTable)>, KvError> {
    let Some(cluster) = db.system_record(CLUSTER_RECORD)? else {
        return Ok(None);
    };
    let slots = db
        .system_record(SLOTS_RECORD)?
        .ok_or_else(|| KvError::Corrupt("cluster record without a slot table".into()))?;
    let table = SystemTable::decode(&slots)
        .map_err(|e| KvError::Corrupt(format!("stored slot table: {e}")))?;
    Ok(Some((cluster, table)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use seshat_kv::{Counts, MemKv};
    use seshat_migration::SlotMap;

    fn table(groups: &[u32]) -> Bytes {
        Bytes::from(SystemTable::new(SlotMap::even(groups).unwrap()).encode())
    }

    #[test]
    fn the_first_bootstrap_is_recorded_and_later_ones_change_nothing() {
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, SYSTEM_GROUP, 0, 1, Counts::default());
        assert_eq!(records(&mut db).unwrap(), None);
        let first = SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"layout-v2 shards=2 replicas=3 members=1,2,3"),
            slots: table(&[1, 2]),
        };
        assert_eq!(apply(&mut db, &first).unwrap(), Frame::Integer(1));
        let other = SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"layout-v2 shards=3 replicas=3 members=1,2,3"),
            slots: table(&[1, 2, 3]),
        };
        assert_eq!(apply(&mut db, &other).unwrap(), Frame::Integer(0));
        let (cluster, t) = records(&mut db).unwrap().unwrap();
        assert_eq!(&cluster[..], b"layout-v2 shards=2 replicas=3 members=1,2,3");
        assert_eq!(t.map(), &SlotMap::even(&[1, 2]).unwrap());
        // Not keys: a data walk never sees them, FLUSHALL spares them.
        assert_eq!(db.counts(), Counts::default());
        db.clear().unwrap();
        assert!(records(&mut db).unwrap().is_some());
    }

    #[test]
    fn a_node_keeps_the_data_directory_it_first_started_with() {
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, SYSTEM_GROUP, 0, 1, Counts::default());
        assert_eq!(node_instance(&mut db, 2).unwrap(), None);
        let boot = |instance| SystemWrite::NodeBooted { node: 2, instance };
        assert_eq!(apply(&mut db, &boot(77)).unwrap(), Frame::Integer(1));
        assert_eq!(apply(&mut db, &boot(77)).unwrap(), Frame::Integer(0));
        assert!(matches!(
            apply(&mut db, &boot(78)).unwrap(),
            Frame::Error(_)
        ));
        assert_eq!(node_instance(&mut db, 2).unwrap(), Some(77));
        assert_eq!(node_instance(&mut db, 3).unwrap(), None);
        // Not keys, and FLUSHALL spares them.
        assert_eq!(db.counts(), Counts::default());
        db.clear().unwrap();
        assert_eq!(node_instance(&mut db, 2).unwrap(), Some(77));
    }

    #[test]
    fn a_bad_table_or_a_data_group_is_refused_without_a_change() {
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, SYSTEM_GROUP, 0, 1, Counts::default());
        let bad = SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"x"),
            slots: Bytes::from_static(b"\x00garbage"),
        };
        assert!(matches!(apply(&mut db, &bad).unwrap(), Frame::Error(_)));
        assert_eq!(records(&mut db).unwrap(), None);
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, 1, 0, 1, Counts::default());
        let good = SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"x"),
            slots: table(&[1]),
        };
        assert!(matches!(apply(&mut db, &good).unwrap(), Frame::Error(_)));
        assert_eq!(records(&mut db).unwrap(), None);
    }
}
