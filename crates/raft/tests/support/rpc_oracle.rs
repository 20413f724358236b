//! The oracle shared by `tests/rpc_fuzz.rs` (proptest, in CI) and the
//! cargo-fuzz target `fuzz/fuzz_targets/rpc.rs`: decodes bytes as one of
//! the messages a peer sends and checks what was accepted. A panic here is
//! a finding.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use openraft::raft::{AppendEntriesRequest, StreamAppendError};
use prost::Message;
use seshat_raft::codec::{log_id_to_pb, membership_to_pb, vote_to_pb};
use seshat_raft::pb;
use seshat_raft::peer_input::{LocalView, MAX_ACCEPTED_LOG_INDEX, MAX_ACCEPTED_TERM};
use seshat_raft::rpc_codec::*;
use seshat_raft::types::{LogId, Vote};
use seshat_raft::TypeConfig;

/// The RPC messages a peer can send, by the first byte of a fuzz input.
pub const KINDS: u8 = 8;

/// Decodes `bytes` as message `kind`, then checks what was accepted:
/// within the peer-input bounds, and encoding it again decodes to the
/// same message. Returns whether the message was accepted.
pub fn decode_and_check(kind: u8, bytes: &[u8], local: &LocalView) -> bool {
    match kind % KINDS {
        0 => {
            let Ok(m) = pb::AppendEntriesRequest::decode(bytes) else {
                return false;
            };
            let Ok(req) = append_request_from_pb(m) else {
                return false;
            };
            assert_append_request_keeps_the_rules(&req);
            let _ = local.check_append(&req);
            let pb1 = append_request_to_pb(&req);
            let again = append_request_from_pb(
                pb::AppendEntriesRequest::decode(pb1.encode_to_vec().as_slice()).unwrap(),
            )
            .unwrap();
            assert_eq!(append_request_to_pb(&again), pb1);
        }
        1 => {
            let Ok(m) = pb::AppendEntriesResponse::decode(bytes) else {
                return false;
            };
            let Ok(resp) = append_response_from_pb(m) else {
                return false;
            };
            let pb1 = append_response_to_pb(&resp);
            let again = append_response_from_pb(pb1).unwrap();
            assert_eq!(again, resp);
        }
        2 => {
            let Ok(m) = pb::VoteRequest::decode(bytes) else {
                return false;
            };
            let Ok(req) = vote_request_from_pb(m) else {
                return false;
            };
            assert_vote_in_bounds(&req.vote);
            assert!(!req.vote.committed, "a candidate's vote is not committed");
            let again = vote_request_from_pb(vote_request_to_pb(&req)).unwrap();
            assert_eq!(again, req);
        }
        3 => {
            let Ok(m) = pb::VoteResponse::decode(bytes) else {
                return false;
            };
            let Ok(resp) = vote_response_from_pb(m) else {
                return false;
            };
            assert_vote_in_bounds(&resp.vote);
            let again = vote_response_from_pb(vote_response_to_pb(&resp)).unwrap();
            assert_eq!(again, resp);
        }
        4 => {
            let Ok(m) = pb::StreamAppendReply::decode(bytes) else {
                return false;
            };
            let Ok(result) = stream_result_from_pb(m) else {
                return false;
            };
            if let Err(StreamAppendError::HigherVote(v)) = &result {
                assert_vote_in_bounds(v);
            }
            let again = stream_result_from_pb(stream_result_to_pb(&result)).unwrap();
            assert_eq!(again, result);
        }
        5 => {
            let Ok(m) = pb::SnapshotStart::decode(bytes) else {
                return false;
            };
            let Ok((vote, meta)) = snapshot_start_from_pb(&m) else {
                return false;
            };
            assert_vote_in_bounds(&vote);
            if let Some(last) = &meta.last_log_id {
                assert_log_id_in_bounds(last);
                assert!(last.leader_id.term <= vote.leader_id.term);
            }
            let _ = local.check_snapshot(&vote, &meta);
            let pb1 = pb::SnapshotStart {
                vote: Some(vote_to_pb(&vote)),
                last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
                membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_pb),
                membership: Some(membership_to_pb(meta.last_membership.membership())),
                size_bytes: m.size_bytes,
            };
            assert_eq!(snapshot_start_from_pb(&pb1).unwrap(), (vote, meta));
        }
        6 => {
            let Ok(m) = pb::SnapshotReply::decode(bytes) else {
                return false;
            };
            let Ok(vote) = snapshot_reply_from_pb(&m) else {
                return false;
            };
            assert_vote_in_bounds(&vote);
        }
        _ => {
            let Ok(m) = pb::TransferLeaderRequest::decode(bytes) else {
                return false;
            };
            let Ok(req) = transfer_leader_from_pb(&m) else {
                return false;
            };
            assert_vote_in_bounds(req.from_leader());
            if let Some(id) = req.last_log_id() {
                assert_log_id_in_bounds(id);
            }
        }
    }
    true
}

fn assert_log_id_in_bounds(id: &LogId) {
    assert!(id.leader_id.term <= MAX_ACCEPTED_TERM, "{id}");
    assert!(id.index <= MAX_ACCEPTED_LOG_INDEX, "{id}");
}

fn assert_vote_in_bounds(vote: &Vote) {
    assert!(vote.leader_id.term <= MAX_ACCEPTED_TERM, "{vote}");
}

/// The shape rules, restated independently of `peer_input`.
fn assert_append_request_keeps_the_rules(req: &AppendEntriesRequest<TypeConfig>) {
    assert_vote_in_bounds(&req.vote);
    assert!(
        req.vote.committed,
        "an append comes from a committed leader"
    );
    let ids = req
        .prev_log_id
        .iter()
        .chain(req.entries.iter().map(|e| &e.log_id))
        .chain(req.leader_commit.iter());
    for id in ids {
        assert_log_id_in_bounds(id);
        assert!(
            id.leader_id.term <= req.vote.leader_id.term,
            "{id} beyond {}",
            req.vote
        );
    }
    let mut prev = req.prev_log_id;
    for e in &req.entries {
        match prev {
            Some(p) => {
                assert_eq!(e.log_id.index, p.index + 1, "entries are consecutive");
                assert!(e.log_id >= p, "log ids never go back");
            }
            None => assert_eq!(e.log_id.index, 0, "without prev_log_id, the log starts"),
        }
        prev = Some(e.log_id);
    }
}
