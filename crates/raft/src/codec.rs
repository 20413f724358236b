//! Conversions between openraft's types and Seshat's protobuf records.
//!
//! Decoding never trusts its input: a missing field, an unknown version or
//! a bad enum value is a [`CodecError`], never a default.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::EntryPayload;
use prost::Message;
use seshat_kv::{AclWrite, SystemWrite, UserDef, Watch, Write, WriteBatch};

use crate::pb;
use crate::types::{CommittedLeaderId, Entry, LogId, Membership, SeshatNode, Vote};

/// Version written into every persisted record.
pub const RECORD_VERSION: u32 = 2;

/// A record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Protobuf decoding failed.
    #[error("cannot decode {what}: {source}")]
    Protobuf {
        /// Which record.
        what: &'static str,
        /// prost's error.
        source: prost::DecodeError,
    },
    /// A record carries a version this build does not understand.
    #[error("{what} has unsupported version {version} (this build reads {RECORD_VERSION})")]
    Version {
        /// Which record.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// A required field is absent.
    #[error("{what} is missing field {field}")]
    Missing {
        /// Which record.
        what: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A field holds a value outside its domain.
    #[error("{what} has invalid {field}: {detail}")]
    Invalid {
        /// Which record.
        what: &'static str,
        /// Which field.
        field: &'static str,
        /// Why.
        detail: String,
    },
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn decode<M: Message + Default>(
    what: &'static str,
    bytes: impl bytes::Buf,
) -> Result<M, CodecError> {
    M::decode(bytes).map_err(|source| CodecError::Protobuf { what, source })
}

fn check_version(what: &'static str, version: u32) -> Result<(), CodecError> {
    if version == RECORD_VERSION {
        Ok(())
    } else {
        Err(CodecError::Version { what, version })
    }
}

fn required<T>(what: &'static str, field: &'static str, v: Option<T>) -> Result<T, CodecError> {
    v.ok_or(CodecError::Missing { what, field })
}

/// openraft log id → protobuf.
pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        leader_node_id: id.leader_id.node_id,
        index: id.index,
    }
}

/// protobuf → openraft log id.
pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(
        CommittedLeaderId {
            term: id.term,
            node_id: id.leader_node_id,
        },
        id.index,
    )
}

/// openraft vote → protobuf.
pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

/// protobuf → openraft vote.
pub fn vote_from_pb(v: &pb::Vote) -> Vote {
    let mut vote = Vote::new(v.term, v.node_id);
    vote.committed = v.committed;
    vote
}

/// openraft membership → protobuf.
pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::NodeIdSet {
                node_ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| {
                (
                    *id,
                    pb::Node {
                        raft_addr: n.raft_addr.clone(),
                        client_addr: n.client_addr.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// protobuf → openraft membership, checked by openraft's own validation.
pub fn membership_from_pb(
    what: &'static str,
    m: &pb::Membership,
) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|c| c.node_ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, SeshatNode> = m
        .nodes
        .iter()
        .map(|(id, n)| {
            (
                *id,
                SeshatNode {
                    raft_addr: n.raft_addr.clone(),
                    client_addr: n.client_addr.clone(),
                },
            )
        })
        .collect();
    Membership::new(configs, nodes).map_err(|e| CodecError::Invalid {
        what,
        field: "membership",
        detail: e.to_string(),
    })
}

/// A batch of client writes → protobuf.
pub fn write_batch_to_pb(batch: &WriteBatch) -> pb::WriteBatch {
    pb::WriteBatch {
        now_ms: batch.now_ms,
        seed: batch.seed,
        writes: batch.writes.iter().map(write_to_pb).collect(),
    }
}

fn argv_to_pb(argv: &[Bytes]) -> pb::Argv {
    pb::Argv {
        args: argv.to_vec(),
    }
}

fn write_to_pb(write: &Write) -> pb::Write {
    use pb::write::Kind;
    let kind = match write {
        Write::Command(argv) => Kind::Command(argv_to_pb(argv)),
        Write::Transaction { watches, commands } => Kind::Transaction(pb::Transaction {
            watches: watches
                .iter()
                .map(|w| pb::Watch {
                    key: w.key.clone(),
                    mod_index: w.mod_index,
                })
                .collect(),
            commands: commands.iter().map(|c| argv_to_pb(c)).collect(),
        }),
        Write::ExpireKeys(keys) => Kind::Expire(pb::ExpireKeys { keys: keys.clone() }),
        Write::Acl(AclWrite::SetUser { name, base, rules }) => Kind::AclSetUser(pb::AclSetUser {
            name: name.clone(),
            base: base.clone(),
            rules: rules.clone(),
        }),
        Write::Acl(AclWrite::DelUser(names)) => Kind::AclDelUser(pb::AclDelUser {
            names: names.clone(),
        }),
        Write::Acl(AclWrite::Replace(users)) => Kind::AclReplace(pb::AclReplace {
            users: users
                .iter()
                .map(|u| pb::AclUserDef {
                    name: u.name.clone(),
                    rules: u.rules.clone(),
                })
                .collect(),
        }),
        Write::System(SystemWrite::Bootstrap { cluster, slots }) => {
            Kind::SystemBootstrap(pb::SystemBootstrap {
                cluster: cluster.clone(),
                slots: slots.clone(),
            })
        }
        Write::System(SystemWrite::Step(step)) => {
            Kind::SystemStep(pb::SystemStep { step: step.clone() })
        }
        Write::System(SystemWrite::NodeBooted { node, instance }) => {
            Kind::NodeBooted(pb::NodeBooted {
                node: *node,
                instance: *instance,
            })
        }
        Write::System(SystemWrite::Member(op)) => Kind::Member(pb::MemberChange { op: op.clone() }),
        Write::Migration { step, initial } => Kind::Migration(pb::MigrationStep {
            step: step.clone(),
            initial: initial.clone(),
        }),
    };
    pb::Write { kind: Some(kind) }
}

/// protobuf → a batch of client writes. Every command must have a name.
pub fn write_batch_from_pb(batch: pb::WriteBatch) -> Result<WriteBatch, CodecError> {
    Ok(WriteBatch {
        now_ms: batch.now_ms,
        seed: batch.seed,
        writes: batch
            .writes
            .into_iter()
            .map(write_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

fn argv_from_pb(argv: pb::Argv) -> Result<Vec<Bytes>, CodecError> {
    if argv.args.is_empty() {
        return Err(CodecError::Invalid {
            what: "write",
            field: "args",
            detail: "a command without a name".into(),
        });
    }
    Ok(argv.args)
}

fn write_from_pb(write: pb::Write) -> Result<Write, CodecError> {
    use pb::write::Kind;
    Ok(match required("write", "kind", write.kind)? {
        Kind::Command(argv) => Write::Command(argv_from_pb(argv)?),
        Kind::Transaction(t) => Write::Transaction {
            watches: t
                .watches
                .into_iter()
                .map(|w| Watch {
                    key: w.key,
                    mod_index: w.mod_index,
                })
                .collect(),
            commands: t
                .commands
                .into_iter()
                .map(argv_from_pb)
                .collect::<Result<_, _>>()?,
        },
        Kind::Expire(e) => Write::ExpireKeys(e.keys),
        Kind::AclSetUser(u) => Write::Acl(AclWrite::SetUser {
            name: u.name,
            base: u.base,
            rules: u.rules,
        }),
        Kind::AclDelUser(d) => Write::Acl(AclWrite::DelUser(d.names)),
        Kind::AclReplace(r) => Write::Acl(AclWrite::Replace(
            r.users
                .into_iter()
                .map(|u| UserDef {
                    name: u.name,
                    rules: u.rules,
                })
                .collect(),
        )),
        Kind::SystemBootstrap(b) => Write::System(SystemWrite::Bootstrap {
            cluster: b.cluster,
            slots: b.slots,
        }),
        Kind::SystemStep(s) => Write::System(SystemWrite::Step(s.step)),
        Kind::NodeBooted(b) => Write::System(SystemWrite::NodeBooted {
            node: b.node,
            instance: b.instance,
        }),
        Kind::Member(m) => Write::System(SystemWrite::Member(m.op)),
        Kind::Migration(m) => Write::Migration {
            step: m.step,
            initial: m.initial,
        },
    })
}

/// openraft entry → protobuf entry.
pub fn entry_to_pb(entry: &Entry) -> pb::LogEntry {
    use pb::log_entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(batch) => Payload::Normal(write_batch_to_pb(batch)),
        EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
    };
    pb::LogEntry {
        version: RECORD_VERSION,
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

/// protobuf entry → openraft entry.
pub fn entry_from_pb(e: pb::LogEntry) -> Result<Entry, CodecError> {
    use pb::log_entry::Payload;
    const WHAT: &str = "log entry";
    check_version(WHAT, e.version)?;
    let log_id = log_id_from_pb(&required(WHAT, "log_id", e.log_id)?);
    let payload = match required(WHAT, "payload", e.payload)? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(batch) => EntryPayload::Normal(write_batch_from_pb(batch)?),
        Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(WHAT, &m)?),
    };
    Ok(Entry { log_id, payload })
}

/// Encodes an entry for the log column family.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_to_pb(entry).encode_to_vec()
}

/// Decodes an entry read from the log column family.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    entry_from_pb(decode("log entry", bytes)?)
}

/// Decodes a log entry whose keys and values share `bytes` (no copies).
pub fn decode_entry_shared(bytes: Bytes) -> Result<Entry, CodecError> {
    entry_from_pb(decode("log entry", bytes)?)
}

/// Encodes a vote record.
pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    pb::VoteRecord {
        version: RECORD_VERSION,
        vote: Some(vote_to_pb(vote)),
    }
    .encode_to_vec()
}

/// Decodes a vote record.
pub fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    const WHAT: &str = "vote record";
    let r: pb::VoteRecord = decode(WHAT, bytes)?;
    check_version(WHAT, r.version)?;
    Ok(vote_from_pb(&required(WHAT, "vote", r.vote)?))
}

/// Encodes a log id record (last purged).
pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    pb::LogIdRecord {
        version: RECORD_VERSION,
        log_id: Some(log_id_to_pb(id)),
    }
    .encode_to_vec()
}

/// Decodes a log id record.
pub fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    const WHAT: &str = "log id record";
    let r: pb::LogIdRecord = decode(WHAT, bytes)?;
    check_version(WHAT, r.version)?;
    Ok(log_id_from_pb(&required(WHAT, "log_id", r.log_id)?))
}

/// Decodes an applied-state record, checking its version.
pub fn decode_applied(bytes: &[u8]) -> Result<pb::AppliedRecord, CodecError> {
    const WHAT: &str = "applied record";
    let r: pb::AppliedRecord = decode(WHAT, bytes)?;
    check_version(WHAT, r.version)?;
    Ok(r)
}

/// Turns raw bytes into `Bytes` without copying when possible.
pub fn to_bytes(v: Vec<u8>) -> Bytes {
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_batch() -> impl Strategy<Value = WriteBatch> {
        let bytes = prop::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from);
        let argv = prop::collection::vec(bytes.clone(), 1..4);
        let write =
            prop_oneof![
                argv.clone().prop_map(Write::Command),
                (
                    prop::collection::vec((bytes.clone(), any::<Option<u64>>()), 0..3),
                    prop::collection::vec(argv, 0..3)
                )
                    .prop_map(|(w, commands)| Write::Transaction {
                        watches: w
                            .into_iter()
                            .map(|(key, mod_index)| Watch { key, mod_index })
                            .collect(),
                        commands,
                    }),
                prop::collection::vec(bytes.clone(), 0..4).prop_map(Write::ExpireKeys),
                (
                    bytes.clone(),
                    prop::collection::vec(bytes.clone(), 0..3),
                    prop::collection::vec(bytes.clone(), 0..3)
                )
                    .prop_map(|(name, base, rules)| Write::Acl(
                        AclWrite::SetUser { name, base, rules }
                    )),
                prop::collection::vec(bytes.clone(), 0..3)
                    .prop_map(|n| Write::Acl(AclWrite::DelUser(n))),
                (bytes.clone(), bytes.clone()).prop_map(|(cluster, slots)| Write::System(
                    SystemWrite::Bootstrap { cluster, slots }
                )),
                bytes
                    .clone()
                    .prop_map(|step| Write::System(SystemWrite::Step(step))),
                (any::<u64>(), any::<u64>()).prop_map(|(node, instance)| Write::System(
                    SystemWrite::NodeBooted { node, instance }
                )),
                bytes
                    .clone()
                    .prop_map(|op| Write::System(SystemWrite::Member(op))),
                (bytes.clone(), bytes.clone())
                    .prop_map(|(step, initial)| Write::Migration { step, initial }),
                prop::collection::vec((bytes.clone(), prop::collection::vec(bytes, 0..3)), 0..3)
                    .prop_map(|users| {
                        Write::Acl(AclWrite::Replace(
                            users
                                .into_iter()
                                .map(|(name, rules)| UserDef { name, rules })
                                .collect(),
                        ))
                    }),
            ];
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(write, 0..6),
        )
            .prop_map(|(now_ms, seed, writes)| WriteBatch {
                now_ms,
                seed,
                writes,
            })
    }

    #[test]
    fn a_command_without_a_name_is_refused_on_decode() {
        let pb = pb::WriteBatch {
            now_ms: 0,
            seed: 0,
            writes: vec![pb::Write {
                kind: Some(pb::write::Kind::Command(pb::Argv { args: vec![] })),
            }],
        };
        assert!(write_batch_from_pb(pb).is_err());
    }

    proptest! {
        #[test]
        fn entry_round_trips(term in 0u64..1000, node in 0u64..10, index in any::<u64>(), batch in arb_batch()) {
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId { term, node_id: node }, index),
                payload: EntryPayload::Normal(batch),
            };
            let decoded = decode_entry(&encode_entry(&entry)).unwrap();
            prop_assert_eq!(decoded, entry);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_entry(&bytes);
            let _ = decode_vote(&bytes);
            let _ = decode_log_id(&bytes);
            let _ = decode_applied(&bytes);
        }
    }

    #[test]
    fn membership_and_vote_round_trip() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            SeshatNode {
                raft_addr: "a:1".into(),
                client_addr: "a:2".into(),
            },
        );
        nodes.insert(
            2,
            SeshatNode {
                raft_addr: "b:1".into(),
                client_addr: "b:2".into(),
            },
        );
        let m = Membership::new(vec![[1, 2].into_iter().collect()], nodes).unwrap();
        let back = membership_from_pb("test", &membership_to_pb(&m)).unwrap();
        assert_eq!(back, m);
        let mut vote = Vote::new(5, 2);
        vote.committed = true;
        assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
    }

    #[test]
    fn unknown_version_is_refused() {
        let rec = pb::LogIdRecord {
            version: 99,
            log_id: Some(pb::LogId::default()),
        };
        let err = decode_log_id(&rec.encode_to_vec()).unwrap_err();
        assert!(matches!(err, CodecError::Version { version: 99, .. }));
    }

    #[test]
    fn entry_without_payload_is_refused() {
        let rec = pb::LogEntry {
            version: RECORD_VERSION,
            log_id: Some(pb::LogId::default()),
            payload: None,
        };
        assert!(matches!(
            decode_entry(&rec.encode_to_vec()),
            Err(CodecError::Missing { .. })
        ));
    }
}
