//! The cluster's nodes as the system group records them: one *directory*
//! record ([`MEMBERS_RECORD`]) listing every node that ever belonged to
//! the cluster, with its addresses and its state, changed only by
//! [`MemberOp`]s applied from the system group's log
//! ([`seshat_kv::SystemWrite::Member`]).
//!
//! - A node started with `--initial-members` records its own addresses
//!   ([`MemberOp::Addresses`]) at its first start, and again when they
//!   change.
//! - A node started with `--join` asks for an id ([`MemberOp::Join`]):
//!   the next id after every id the cluster has used (the bootstrap
//!   members and the directory, which never forgets a node), so an id is
//!   never given twice. A join retried with the same data directory
//!   (`instance`) gets the id it got the first time. A join from the Raft
//!   address of a node the directory still lists marks that node
//!   removed: the address now belongs to a new data directory, so the old
//!   node's data is gone (a node replaced by wiping its disk and joining
//!   again).
//! - An operator decommissions or removes a node ([`MemberOp::State`]).
//!   `Removed` is final: a removed node's id is never used again and the
//!   node is refused if it starts again.
//!
//! The text form is one line per node, so the record reads well in a
//! debugger; it is small (tens of bytes per node, [`MAX_NODES`] at most).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use seshat_kv::{Keyspace, KvError, RawKv};
use seshat_protocol_resp::Frame;

/// Name of the directory record in the system group.
pub const MEMBERS_RECORD: &[u8] = b"members";

/// Most nodes the directory holds (removed ones included).
pub const MAX_NODES: usize = 1024;

/// The first line of the directory's text form.
const DIRECTORY_VERSION: &str = "members-v1";

/// Longest address text accepted.
const MAX_ADDR_LEN: usize = 255;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeState {
    /// Holds replicas and takes new ones.
    Active,
    /// Its replicas are being moved away; it takes no new ones. Once it
    /// holds none the rebalancer marks it removed.
    Decommissioning,
    /// Gone for good: holds nothing, may never run again.
    Removed,
}

impl NodeState {
    /// The state's name in the record and in replies.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Decommissioning => "decommissioning",
            NodeState::Removed => "removed",
        }
    }

    /// The state named `name` (any case).
    pub fn parse(name: &str) -> Option<NodeState> {
        match name.to_ascii_lowercase().as_str() {
            "active" => Some(NodeState::Active),
            "decommissioning" => Some(NodeState::Decommissioning),
            "removed" => Some(NodeState::Removed),
            _ => None,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A node's advertised addresses (`host:port` texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// Raft (gRPC) address.
    pub raft: String,
    /// Client (RESP) address.
    pub client: String,
    /// Client TLS address, if it serves TLS.
    pub tls: Option<String>,
}

impl Addresses {
    fn check(&self) -> Result<(), String> {
        for (what, a) in [("raft", Some(&self.raft)), ("client", Some(&self.client))]
            .into_iter()
            .chain([("tls", self.tls.as_ref())])
        {
            let Some(a) = a else { continue };
            if a.is_empty() || a.len() > MAX_ADDR_LEN || a.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(format!("bad {what} address {a:?}"));
            }
        }
        Ok(())
    }
}

/// One node of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node id.
    pub id: u64,
    /// Where it stands.
    pub state: NodeState,
    /// Its addresses.
    pub addrs: Addresses,
    /// The data directory it joined with (0: a bootstrap member, whose
    /// data directory is in its boot record).
    pub instance: u64,
}

/// Every node the cluster has had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// The nodes by id.
    pub nodes: BTreeMap<u64, NodeRecord>,
}

impl Directory {
    /// The text form (see the module docs).
    pub fn encode(&self) -> String {
        let mut out = String::from(DIRECTORY_VERSION);
        for n in self.nodes.values() {
            out.push_str(&format!(
                "\n{} {} {} {} {} {}",
                n.id,
                n.state,
                n.addrs.raft,
                n.addrs.client,
                n.addrs.tls.as_deref().unwrap_or("-"),
                n.instance
            ));
        }
        out
    }

    /// Parses [`Self::encode`]'s text.
    pub fn decode(text: &[u8]) -> Result<Directory, String> {
        let text = std::str::from_utf8(text).map_err(|_| "directory is not UTF-8".to_string())?;
        let mut lines = text.split('\n');
        if lines.next() != Some(DIRECTORY_VERSION) {
            return Err(format!("directory is not in format {DIRECTORY_VERSION}"));
        }
        let mut nodes = BTreeMap::new();
        for line in lines {
            let bad = || format!("unreadable directory line {line:?}");
            let f: Vec<&str> = line.split(' ').collect();
            let [id, state, raft, client, tls, instance] = f[..] else {
                return Err(bad());
            };
            let record = NodeRecord {
                id: id.parse().map_err(|_| bad())?,
                state: NodeState::parse(state).ok_or_else(bad)?,
                addrs: Addresses {
                    raft: raft.to_string(),
                    client: client.to_string(),
                    tls: (tls != "-").then(|| tls.to_string()),
                },
                instance: instance.parse().map_err(|_| bad())?,
            };
            nodes.insert(record.id, record);
        }
        Ok(Directory { nodes })
    }

    /// The node `id`, if recorded.
    pub fn get(&self, id: u64) -> Option<&NodeRecord> {
        self.nodes.get(&id)
    }
}

/// A change to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    /// A node with data directory `instance` asks to join: replies its
    /// new id (or the one this instance got before).
    Join {
        /// The joining data directory's random id.
        instance: u64,
        /// Its addresses.
        addrs: Addresses,
    },
    /// Bootstrap member `node` records (or updates) its addresses.
    Addresses {
        /// The node.
        node: u64,
        /// Its addresses.
        addrs: Addresses,
    },
    /// An operator (or the rebalancer) changes `node`'s state.
    State {
        /// The node.
        node: u64,
        /// Its new state.
        state: NodeState,
    },
}

impl MemberOp {
    /// The op as the log carries it.
    pub fn encode(&self) -> Bytes {
        let addrs = |a: &Addresses| {
            format!(
                "{} {} {}",
                a.raft,
                a.client,
                a.tls.as_deref().unwrap_or("-")
            )
        };
        Bytes::from(match self {
            MemberOp::Join { instance, addrs: a } => format!("join {instance} {}", addrs(a)),
            MemberOp::Addresses { node, addrs: a } => format!("addr {node} {}", addrs(a)),
            MemberOp::State { node, state } => format!("state {node} {state}"),
        })
    }

    /// Parses [`Self::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Result<MemberOp, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "member op is not UTF-8".to_string())?;
        let bad = || format!("unreadable member op {text:?}");
        let f: Vec<&str> = text.split(' ').collect();
        let addrs = |f: &[&str]| Addresses {
            raft: f[0].to_string(),
            client: f[1].to_string(),
            tls: (f[2] != "-").then(|| f[2].to_string()),
        };
        match f[..] {
            ["join", instance, _, _, _] => Ok(MemberOp::Join {
                instance: instance.parse().map_err(|_| bad())?,
                addrs: addrs(&f[2..]),
            }),
            ["addr", node, _, _, _] => Ok(MemberOp::Addresses {
                node: node.parse().map_err(|_| bad())?,
                addrs: addrs(&f[2..]),
            }),
            ["state", node, state] => Ok(MemberOp::State {
                node: node.parse().map_err(|_| bad())?,
                state: NodeState::parse(state).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }
}

/// The directory as recorded (empty before any node recorded itself).
pub fn directory<K: RawKv + ?Sized>(db: &mut Keyspace<'_, K>) -> Result<Directory, KvError> {
    match db.system_record(MEMBERS_RECORD)? {
        None => Ok(Directory::default()),
        Some(v) => Directory::decode(&v)
            .map_err(|e| KvError::Corrupt(format!("stored member directory: {e}"))),
    }
}

/// The bootstrap members the cluster record lists.
fn bootstrap_members<K: RawKv + ?Sized>(db: &mut Keyspace<'_, K>) -> Result<Vec<u64>, KvError> {
    let Some(cluster) = db.system_record(crate::system::CLUSTER_RECORD)? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&cluster).into_owned();
    Ok(text
        .split(' ')
        .find_map(|p| p.strip_prefix("members="))
        .map(|m| m.split(',').filter_map(|id| id.parse().ok()).collect())
        .unwrap_or_default())
}

/// Applies a directory change (see the module docs). Replies: the node
/// id for a join, `OK` otherwise; an error reply (and no change) for a
/// refused op.
pub fn apply<K: RawKv + ?Sized>(db: &mut Keyspace<'_, K>, op: &[u8]) -> Result<Frame, KvError> {
    let op = match MemberOp::decode(op) {
        Ok(op) => op,
        Err(e) => return Ok(Frame::error(format!("ERR {e}"))),
    };
    let mut dir = directory(db)?;
    let reply = match op {
        MemberOp::Join { instance, addrs } => {
            if let Err(e) = addrs.check() {
                return Ok(Frame::error(format!("ERR {e}")));
            }
            if let Some(n) = dir
                .nodes
                .values()
                .find(|n| n.instance == instance && instance != 0)
            {
                if n.state == NodeState::Removed {
                    return Ok(Frame::error(format!(
                        "ERR node {} was removed from the cluster; start it with an empty data directory to join as a new node",
                        n.id
                    )));
                }
                return Ok(Frame::Integer(i64::try_from(n.id).unwrap_or(i64::MAX)));
            }
            if dir.nodes.len() >= MAX_NODES {
                return Ok(Frame::error(format!(
                    "ERR the cluster has had {MAX_NODES} nodes, the most it may"
                )));
            }
            let used = bootstrap_members(db)?
                .into_iter()
                .chain(dir.nodes.keys().copied())
                .max()
                .unwrap_or(0);
            let id = used + 1;
            for n in dir.nodes.values_mut() {
                if n.addrs.raft == addrs.raft && n.state != NodeState::Removed {
                    n.state = NodeState::Removed;
                }
            }
            dir.nodes.insert(
                id,
                NodeRecord {
                    id,
                    state: NodeState::Active,
                    addrs,
                    instance,
                },
            );
            db.put_system_record(&crate::system::node_record(id), &instance.to_be_bytes())?;
            Frame::Integer(i64::try_from(id).unwrap_or(i64::MAX))
        }
        MemberOp::Addresses { node, addrs } => {
            if let Err(e) = addrs.check() {
                return Ok(Frame::error(format!("ERR {e}")));
            }
            match dir.nodes.get_mut(&node) {
                Some(n) if n.state == NodeState::Removed => {
                    return Ok(Frame::error(format!(
                        "ERR node {node} was removed from the cluster"
                    )));
                }
                Some(n) if n.addrs == addrs => return Ok(Frame::ok()),
                Some(n) => n.addrs = addrs,
                None => {
                    if !bootstrap_members(db)?.contains(&node) {
                        return Ok(Frame::error(format!(
                            "ERR node {node} is not a member of this cluster"
                        )));
                    }
                    dir.nodes.insert(
                        node,
                        NodeRecord {
                            id: node,
                            state: NodeState::Active,
                            addrs,
                            instance: 0,
                        },
                    );
                }
            }
            Frame::ok()
        }
        MemberOp::State { node, state } => {
            let Some(n) = dir.nodes.get_mut(&node) else {
                return Ok(Frame::error(format!("ERR no node {node} in the cluster")));
            };
            if n.state == state {
                return Ok(Frame::ok());
            }
            if n.state == NodeState::Removed {
                return Ok(Frame::error(format!(
                    "ERR node {node} was removed; a removed node cannot come back"
                )));
            }
            n.state = state;
            Frame::ok()
        }
    };
    db.put_system_record(MEMBERS_RECORD, dir.encode().as_bytes())?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seshat_kv::keys::SYSTEM_GROUP;
    use seshat_kv::{Counts, MemKv};

    fn addrs(port: u16) -> Addresses {
        Addresses {
            raft: format!("127.0.0.1:{}", 7000 + port),
            client: format!("127.0.0.1:{}", 6000 + port),
            tls: None,
        }
    }

    fn run(db: &mut Keyspace<'_, MemKv>, op: MemberOp) -> Frame {
        apply(db, &op.encode()).unwrap()
    }

    #[test]
    fn ops_and_the_directory_round_trip() {
        let ops = [
            MemberOp::Join {
                instance: 9,
                addrs: addrs(1),
            },
            MemberOp::Addresses {
                node: 2,
                addrs: Addresses {
                    tls: Some("127.0.0.1:8000".into()),
                    ..addrs(2)
                },
            },
            MemberOp::State {
                node: 3,
                state: NodeState::Decommissioning,
            },
        ];
        for op in ops {
            assert_eq!(MemberOp::decode(&op.encode()).unwrap(), op);
        }
        assert!(MemberOp::decode(b"join x 1 2 3").is_err());
        assert!(MemberOp::decode(b"state 1 gone").is_err());
        assert!(MemberOp::decode(b"").is_err());
        let mut dir = Directory::default();
        dir.nodes.insert(
            4,
            NodeRecord {
                id: 4,
                state: NodeState::Removed,
                addrs: addrs(4),
                instance: 77,
            },
        );
        assert_eq!(Directory::decode(dir.encode().as_bytes()).unwrap(), dir);
        assert!(Directory::decode(b"members-v0").is_err());
    }

    #[test]
    fn joins_get_fresh_ids_never_reused_and_a_retry_gets_the_same() {
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, SYSTEM_GROUP, 0, 1, Counts::default());
        db.put_system_record(
            crate::system::CLUSTER_RECORD,
            b"layout-v2 shards=1 replicas=7 members=1,2,3",
        )
        .unwrap();
        // Node 3 never recorded itself: its id is still taken.
        for n in 1..=2 {
            let op = MemberOp::Addresses {
                node: n,
                addrs: addrs(n as u16),
            };
            assert_eq!(run(&mut db, op), Frame::ok());
        }
        let join = |instance, port| MemberOp::Join {
            instance,
            addrs: addrs(port),
        };
        assert_eq!(run(&mut db, join(100, 4)), Frame::Integer(4));
        assert_eq!(run(&mut db, join(100, 4)), Frame::Integer(4));
        assert_eq!(run(&mut db, join(101, 5)), Frame::Integer(5));
        // Node 5's disk is wiped; it joins again from the same address:
        // a new id, and the old one is removed for good.
        assert_eq!(run(&mut db, join(102, 5)), Frame::Integer(6));
        let dir = directory(&mut db).unwrap();
        assert_eq!(dir.get(5).unwrap().state, NodeState::Removed);
        assert_eq!(dir.get(6).unwrap().state, NodeState::Active);
        assert!(matches!(run(&mut db, join(101, 5)), Frame::Error(_)));
        let back = MemberOp::State {
            node: 5,
            state: NodeState::Active,
        };
        assert!(matches!(run(&mut db, back), Frame::Error(_)));
        // The boot record of a joined node is its instance.
        assert_eq!(crate::system::node_instance(&mut db, 6).unwrap(), Some(102));
        // Removing the newest node does not free its id.
        let remove = MemberOp::State {
            node: 6,
            state: NodeState::Removed,
        };
        assert_eq!(run(&mut db, remove), Frame::ok());
        assert_eq!(run(&mut db, join(103, 7)), Frame::Integer(7));
    }

    #[test]
    fn bad_ops_change_nothing() {
        let mut kv = MemKv::default();
        let mut db = Keyspace::new(&mut kv, SYSTEM_GROUP, 0, 1, Counts::default());
        db.put_system_record(
            crate::system::CLUSTER_RECORD,
            b"layout-v2 shards=1 replicas=7 members=1",
        )
        .unwrap();
        let bad_addr = MemberOp::Join {
            instance: 1,
            addrs: Addresses {
                raft: "nowhere".into(),
                ..addrs(1)
            },
        };
        assert!(matches!(run(&mut db, bad_addr), Frame::Error(_)));
        let stranger = MemberOp::Addresses {
            node: 9,
            addrs: addrs(9),
        };
        assert!(matches!(run(&mut db, stranger), Frame::Error(_)));
        let unknown = MemberOp::State {
            node: 9,
            state: NodeState::Removed,
        };
        assert!(matches!(run(&mut db, unknown), Frame::Error(_)));
        assert!(matches!(
            apply(&mut db, b"garbage").unwrap(),
            Frame::Error(_)
        ));
        assert_eq!(directory(&mut db).unwrap(), Directory::default());
    }
}
