//! Fuzzing in CI for what peers send (issue 18, item 8): property tests
//! that feed the Raft RPC codec ([`seshat_raft::rpc_codec`]) and the
//! peer-input rules ([`seshat_raft::peer_input`]) arbitrary bytes and
//! mutated valid messages. Whatever comes in must decode to an error or to
//! a message that keeps the rules and encodes back to itself — never a
//! panic. Valid messages round-trip exactly.
//!
//! `SESHAT_FUZZ_CASES=n` runs n cases per property instead of the CI
//! default; `crates/raft/fuzz` holds a cargo-fuzz target for deeper runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/rpc_oracle.rs"]
mod rpc_oracle;

use std::collections::BTreeMap;

use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::EntryPayload;
use proptest::prelude::*;
use prost::Message;
use rpc_oracle::{decode_and_check, KINDS};
use seshat_kv::{Write, WriteBatch};
use seshat_raft::codec::{log_id_to_pb, membership_to_pb, vote_to_pb};
use seshat_raft::pb;
use seshat_raft::peer_input::LocalView;
use seshat_raft::rpc_codec::*;
use seshat_raft::types::{CommittedLeaderId, Entry, LogId, Membership, Vote};
use seshat_raft::{SeshatNode, TypeConfig};

/// Cases per property: enough to cover the message shapes in a few
/// seconds of a release build.
fn cases(default: u32) -> u32 {
    std::env::var("SESHAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId { term, node_id: 1 }, index)
}

fn membership() -> Membership {
    let nodes: BTreeMap<u64, SeshatNode> = [1, 2, 3]
        .into_iter()
        .map(|id| {
            let node = SeshatNode {
                raft_addr: format!("127.0.0.1:{}", 7378 + id),
                client_addr: format!("127.0.0.1:{}", 6378 + id),
            };
            (id, node)
        })
        .collect();
    Membership::new(vec![[1, 2, 3].into_iter().collect()], nodes).unwrap()
}

fn arb_payload() -> impl Strategy<Value = EntryPayload<WriteBatch, u64, SeshatNode>> {
    let arg = proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from);
    let argv = proptest::collection::vec(arg.clone(), 1..4);
    let batch = (
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(argv, 0..3),
    )
        .prop_map(|(now_ms, seed, cmds)| {
            EntryPayload::Normal(WriteBatch {
                now_ms,
                seed,
                writes: cmds.into_iter().map(Write::Command).collect(),
            })
        });
    prop_oneof![
        Just(EntryPayload::Blank),
        batch,
        Just(EntryPayload::Membership(membership())),
    ]
}

/// A valid AppendEntries request: a committed leader's vote, then
/// consecutive entries whose terms never pass it.
fn arb_append_request() -> impl Strategy<Value = AppendEntriesRequest<TypeConfig>> {
    (
        1u64..1_000,
        0u64..1_000_000,
        proptest::option::of(0u64..1_000),
    )
        .prop_flat_map(|(term, start, prev_term)| {
            let payloads = proptest::collection::vec(arb_payload(), 0..5);
            let bumps = proptest::collection::vec(any::<bool>(), 5);
            (Just((term, start, prev_term)), payloads, bumps)
        })
        .prop_map(|((term, start, prev_term), payloads, bumps)| {
            let mut vote = Vote::new(term, 1);
            vote.committed = true;
            let prev = prev_term.map(|t| log_id(t.min(term), start));
            let mut t = prev.map_or(1, |p| p.leader_id.term);
            // Without a previous entry, the entries start the log.
            let first = prev.map_or(0, |p| p.index + 1);
            let entries: Vec<Entry> = payloads
                .into_iter()
                .zip(bumps)
                .enumerate()
                .map(|(i, (payload, bump))| {
                    if bump && t < term {
                        t += 1;
                    }
                    Entry {
                        log_id: log_id(t, first + i as u64),
                        payload,
                    }
                })
                .collect();
            AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                leader_commit: prev,
                entries,
            }
        })
}

/// A valid message of any kind, with its kind byte.
fn arb_valid_message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let term = 1u64..1_000;
    let index = 0u64..1_000_000;
    prop_oneof![
        arb_append_request().prop_map(|r| (0, append_request_to_pb(&r).encode_to_vec())),
        (term.clone(), proptest::option::of(index.clone())).prop_map(|(t, last)| {
            let req = VoteRequest::<TypeConfig>::new(Vote::new(t, 2), last.map(|i| log_id(t, i)));
            (2, vote_request_to_pb(&req).encode_to_vec())
        }),
        (term.clone(), index.clone()).prop_map(|(t, i)| {
            let m = pb::StreamAppendReply {
                result: Some(pb::stream_append_reply::Result::Conflict(log_id_to_pb(
                    &log_id(t, i),
                ))),
            };
            (4, m.encode_to_vec())
        }),
        (term, index).prop_map(|(t, i)| {
            let mut vote = Vote::new(t, 1);
            vote.committed = true;
            let m = pb::SnapshotStart {
                vote: Some(vote_to_pb(&vote)),
                last_log_id: Some(log_id_to_pb(&log_id(t, i))),
                membership_log_id: Some(log_id_to_pb(&log_id(1, 0))),
                membership: Some(membership_to_pb(&membership())),
                size_bytes: 1 << 20,
            };
            (5, m.encode_to_vec())
        }),
    ]
}

/// One edit of a byte string, as a fuzzer's mutator makes them.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Copies a slice elsewhere: repeats fields, makes varints overlap.
    Duplicate {
        from: usize,
        len: usize,
        to: usize,
    },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (
            at,
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, proptest::collection::vec(any::<u8>(), 1..10))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at, 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
        (at, 1usize..32, at).prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match m {
        Mutation::Flip { at, bit } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= 1 << bit;
            }
        }
        Mutation::Set { at, byte } => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = *byte;
            }
        }
        Mutation::Insert { at, bytes: new } => {
            let i = pos(*at, bytes.len());
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate { at } => bytes.truncate(pos(*at, bytes.len())),
        Mutation::Duplicate { from, len, to } => {
            let i = pos(*from, bytes.len());
            let end = (i + len).min(bytes.len());
            let slice: Vec<u8> = bytes[i..end].to_vec();
            let j = pos(*to, bytes.len());
            bytes.splice(j..j, slice);
        }
    }
}

fn arb_local_view() -> impl Strategy<Value = LocalView> {
    (
        1u64..4,
        proptest::option::of((0u64..1_000, 0u64..1_000_000)),
        (0u64..1_000, 1u64..4, any::<bool>()),
    )
        .prop_map(|(node_id, c, (term, leader, committed))| {
            let mut vote = Vote::new(term, leader);
            vote.committed = committed;
            LocalView {
                node_id,
                committed: c.map(|(t, i)| log_id(t, i)),
                vote,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(65_536)))]

    /// Arbitrary bytes, as any message kind: an error or a message that
    /// keeps the rules, never a panic.
    #[test]
    fn arbitrary_bytes_decode_to_an_error_or_a_valid_message(
        kind in 0..KINDS,
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        local in arb_local_view(),
    ) {
        decode_and_check(kind, &bytes, &local);
    }

    /// Valid messages after a fuzzer's edits: decoded as their own kind
    /// and as every other kind.
    #[test]
    fn mutated_messages_decode_to_an_error_or_a_valid_message(
        (kind, mut bytes) in arb_valid_message(),
        mutations in proptest::collection::vec(arb_mutation(), 1..6),
        local in arb_local_view(),
    ) {
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        for k in 0..KINDS {
            decode_and_check(kind.wrapping_add(k), &bytes, &local);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(4096)))]

    /// What a leader sends decodes to exactly what it sent.
    #[test]
    fn valid_append_requests_round_trip(req in arb_append_request()) {
        let wire = append_request_to_pb(&req).encode_to_vec();
        let back = append_request_from_pb(pb::AppendEntriesRequest::decode(wire.as_slice()).unwrap());
        let back = back.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(append_request_to_pb(&back), append_request_to_pb(&req));
    }

    /// Every valid message is accepted by its own decoder.
    #[test]
    fn valid_messages_are_accepted((kind, bytes) in arb_valid_message()) {
        let local = LocalView { node_id: 99, committed: None, vote: Vote::new(0, 0) };
        prop_assert!(decode_and_check(kind, &bytes, &local));
    }
}
