//! Conversions between openraft's RPC messages and their protobuf form.
//!
//! What comes from a peer is checked as it is decoded: a message breaking
//! one of the shape rules of [`crate::peer_input`] is a [`CodecError`].

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
    TransferLeaderRequest, VoteRequest, VoteResponse,
};

use crate::codec::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, membership_from_pb, vote_from_pb,
    vote_to_pb, CodecError,
};
use crate::pb;
use crate::peer_input;
use crate::types::{SnapshotMeta, StoredMembership, TypeConfig, Vote};

fn missing(what: &'static str, field: &'static str) -> CodecError {
    CodecError::Missing { what, field }
}

/// AppendEntries request → protobuf.
pub fn append_request_to_pb(r: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to_pb),
        entries: r.entries.iter().map(entry_to_pb).collect(),
        leader_commit: r.leader_commit.as_ref().map(log_id_to_pb),
    }
}

/// protobuf → AppendEntries request, refused unless it has the shape
/// [`peer_input::check_append_request`] requires.
pub fn append_request_from_pb(
    r: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    const WHAT: &str = "append-entries request";
    let vote = vote_from_pb(&r.vote.ok_or(missing(WHAT, "vote"))?);
    let entries = r
        .entries
        .into_iter()
        .map(entry_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let req = AppendEntriesRequest {
        vote,
        prev_log_id: r.prev_log_id.as_ref().map(log_id_from_pb),
        entries,
        leader_commit: r.leader_commit.as_ref().map(log_id_from_pb),
    };
    peer_input::check_append_request(&req)?;
    Ok(req)
}

/// AppendEntries response → protobuf.
pub fn append_response_to_pb(r: &AppendEntriesResponse<TypeConfig>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match r {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(pb::PartialSuccess {
            matching: m.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// protobuf → AppendEntries response.
pub fn append_response_from_pb(
    r: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<TypeConfig>, CodecError> {
    use pb::append_entries_response::Result as R;
    let resp = match r
        .result
        .ok_or(missing("append-entries response", "result"))?
    {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(p) => {
            AppendEntriesResponse::PartialSuccess(p.matching.as_ref().map(log_id_from_pb))
        }
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(&v)),
    };
    peer_input::check_append_response(&resp)?;
    Ok(resp)
}

/// Vote request → protobuf.
pub fn vote_request_to_pb(r: &VoteRequest<TypeConfig>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: r.leadership_transfer,
    }
}

/// protobuf → Vote or Pre-Vote request, refused unless it has the shape
/// [`peer_input::check_vote_request`] requires.
pub fn vote_request_from_pb(r: pb::VoteRequest) -> Result<VoteRequest<TypeConfig>, CodecError> {
    let vote = vote_from_pb(&r.vote.ok_or(missing("vote request", "vote"))?);
    let mut req = VoteRequest::new(vote, r.last_log_id.as_ref().map(log_id_from_pb));
    req.leadership_transfer = r.leadership_transfer;
    peer_input::check_vote_request(&req)?;
    Ok(req)
}

/// Vote response → protobuf.
pub fn vote_response_to_pb(r: &VoteResponse<TypeConfig>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
    }
}

/// protobuf → vote response.
pub fn vote_response_from_pb(r: pb::VoteResponse) -> Result<VoteResponse<TypeConfig>, CodecError> {
    let vote = vote_from_pb(&r.vote.ok_or(missing("vote response", "vote"))?);
    let resp = VoteResponse::new(
        vote,
        r.last_log_id.as_ref().map(log_id_from_pb),
        r.vote_granted,
    );
    peer_input::check_vote_response(&resp)?;
    Ok(resp)
}

/// Pipelined append result → protobuf.
pub fn stream_result_to_pb(r: &StreamAppendResult<TypeConfig>) -> pb::StreamAppendReply {
    use pb::stream_append_reply::Result as R;
    let result = match r {
        Ok(flushed) => R::Flushed(pb::PartialSuccess {
            matching: flushed.as_ref().map(log_id_to_pb),
        }),
        Err(StreamAppendError::Conflict(id)) => R::Conflict(log_id_to_pb(id)),
        Err(StreamAppendError::HigherVote(v)) => R::HigherVote(vote_to_pb(v)),
    };
    pb::StreamAppendReply {
        result: Some(result),
    }
}

/// protobuf → pipelined append result.
pub fn stream_result_from_pb(
    r: pb::StreamAppendReply,
) -> Result<StreamAppendResult<TypeConfig>, CodecError> {
    use pb::stream_append_reply::Result as R;
    let result = match r.result.ok_or(missing("stream-append reply", "result"))? {
        R::Flushed(p) => Ok(p.matching.as_ref().map(log_id_from_pb)),
        R::Conflict(id) => Err(StreamAppendError::Conflict(log_id_from_pb(&id))),
        R::HigherVote(v) => Err(StreamAppendError::HigherVote(vote_from_pb(&v))),
    };
    peer_input::check_stream_result(&result)?;
    Ok(result)
}

/// protobuf → a snapshot's sender vote and metadata, refused unless they
/// have the shape [`peer_input::check_snapshot`] requires.
pub fn snapshot_start_from_pb(s: &pb::SnapshotStart) -> Result<(Vote, SnapshotMeta), CodecError> {
    const WHAT: &str = "snapshot start";
    let vote = vote_from_pb(s.vote.as_ref().ok_or(missing(WHAT, "vote"))?);
    let membership = membership_from_pb(WHAT, &s.membership.clone().unwrap_or_default())?;
    let meta = SnapshotMeta {
        last_log_id: s.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: StoredMembership::new(
            s.membership_log_id.as_ref().map(log_id_from_pb),
            membership,
        ),
    };
    peer_input::check_snapshot(&vote, &meta)?;
    Ok((vote, meta))
}

/// protobuf → the vote in a snapshot reply, within bounds.
pub fn snapshot_reply_from_pb(r: &pb::SnapshotReply) -> Result<Vote, CodecError> {
    const WHAT: &str = "snapshot reply";
    let vote = vote_from_pb(r.vote.as_ref().ok_or(missing(WHAT, "vote"))?);
    peer_input::check_vote(WHAT, "vote", &vote)?;
    Ok(vote)
}

/// protobuf → leadership transfer, refused unless it has the shape
/// [`peer_input::check_transfer_leader`] requires.
pub fn transfer_leader_from_pb(
    r: &pb::TransferLeaderRequest,
) -> Result<TransferLeaderRequest<TypeConfig>, CodecError> {
    let from = vote_from_pb(
        r.from_leader
            .as_ref()
            .ok_or(missing("transfer-leader request", "from_leader"))?,
    );
    let req = TransferLeaderRequest::new(
        from,
        r.to_node_id,
        r.last_log_id.as_ref().map(log_id_from_pb),
    );
    peer_input::check_transfer_leader(&req)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CommittedLeaderId, Entry, LogId};
    use openraft::EntryPayload;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId { term, node_id: 1 }, index),
            payload: EntryPayload::Blank,
        }
    }

    fn pb_log_id(term: u64, index: u64) -> pb::LogId {
        pb::LogId {
            term,
            leader_node_id: 1,
            index,
        }
    }

    fn leader_vote(term: u64) -> pb::Vote {
        pb::Vote {
            term,
            node_id: 1,
            committed: true,
        }
    }

    fn request(prev: Option<(u64, u64)>, entries: Vec<Entry>) -> pb::AppendEntriesRequest {
        pb::AppendEntriesRequest {
            vote: Some(leader_vote(3)),
            prev_log_id: prev.map(|(t, i)| pb_log_id(t, i)),
            entries: entries.iter().map(entry_to_pb).collect(),
            leader_commit: None,
        }
    }

    fn snapshot_start(vote_term: u64, last: pb::LogId) -> pb::SnapshotStart {
        let mut nodes = std::collections::BTreeMap::new();
        nodes.insert(1, crate::SeshatNode::default());
        let membership =
            crate::types::Membership::new(vec![[1].into_iter().collect()], nodes).unwrap();
        pb::SnapshotStart {
            vote: Some(leader_vote(vote_term)),
            last_log_id: Some(last),
            membership_log_id: Some(pb_log_id(1, 0)),
            membership: Some(crate::codec::membership_to_pb(&membership)),
            size_bytes: 0,
        }
    }

    #[test]
    fn consecutive_entries_are_accepted() {
        let r = request(Some((2, 9)), vec![entry(2, 10), entry(3, 11)]);
        assert_eq!(append_request_from_pb(r).unwrap().entries.len(), 2);
        assert!(append_request_from_pb(request(None, vec![entry(1, 0), entry(1, 1)])).is_ok());
    }

    /// Regression: a batch with a gap or a term going backwards reached
    /// openraft.
    #[test]
    fn gaps_and_decreasing_terms_are_refused() {
        assert!(append_request_from_pb(request(Some((2, 9)), vec![entry(2, 11)])).is_err());
        assert!(
            append_request_from_pb(request(Some((2, 9)), vec![entry(2, 10), entry(1, 11)]))
                .is_err()
        );
    }

    /// Regression (issue 18): decoding applies the peer-input rules, so a
    /// term of 2^64−1 never reaches openraft, in a request or a reply.
    #[test]
    fn issue_18_term_u64_max_is_refused_on_decode() {
        let mut r = request(None, vec![]);
        r.vote = Some(leader_vote(u64::MAX));
        assert!(append_request_from_pb(r).is_err());
        let vote = pb::VoteRequest {
            vote: Some(pb::Vote {
                term: u64::MAX,
                node_id: 2,
                committed: false,
            }),
            last_log_id: None,
            leadership_transfer: false,
        };
        assert!(vote_request_from_pb(vote).is_err());
        let reply = pb::StreamAppendReply {
            result: Some(pb::stream_append_reply::Result::HigherVote(leader_vote(
                u64::MAX,
            ))),
        };
        assert!(stream_result_from_pb(reply).is_err());
        let reply = pb::SnapshotReply {
            vote: Some(leader_vote(u64::MAX)),
        };
        assert!(snapshot_reply_from_pb(&reply).is_err());
    }

    /// Regression (issue 18): a snapshot whose last log id has a higher
    /// term than its vote is refused before it is even received.
    #[test]
    fn issue_18_forged_snapshot_start_is_refused_on_decode() {
        assert!(snapshot_start_from_pb(&snapshot_start(3, pb_log_id(3, 100))).is_ok());
        assert!(snapshot_start_from_pb(&snapshot_start(3, pb_log_id(4, 100))).is_err());
    }
}
