//! Conversions between openraft's RPC messages and their protobuf form.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
    VoteRequest, VoteResponse,
};

use crate::codec::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb, CodecError,
};
use crate::pb;
use crate::types::TypeConfig;

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

/// protobuf → AppendEntries request.
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
    check_consecutive(r.prev_log_id.as_ref(), &entries)?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id: r.prev_log_id.as_ref().map(log_id_from_pb),
        entries,
        leader_commit: r.leader_commit.as_ref().map(log_id_from_pb),
    })
}

/// Entries must follow `prev` with consecutive indexes and non-decreasing
/// terms; anything else is refused before it reaches openraft.
fn check_consecutive(
    prev: Option<&pb::LogId>,
    entries: &[crate::types::Entry],
) -> Result<(), CodecError> {
    let mut expected = prev.map_or(0, |p| p.index.saturating_add(1));
    let mut last_term = prev.map_or(0, |p| p.term);
    for e in entries {
        if e.log_id.index != expected || e.log_id.leader_id.term < last_term {
            return Err(CodecError::Invalid {
                what: "append-entries request",
                field: "entries",
                detail: format!(
                    "entry {} does not follow index {} of term {last_term}",
                    e.log_id,
                    expected.saturating_sub(1)
                ),
            });
        }
        expected = expected.saturating_add(1);
        last_term = e.log_id.leader_id.term;
    }
    Ok(())
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
    Ok(
        match r
            .result
            .ok_or(missing("append-entries response", "result"))?
        {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(p) => {
                AppendEntriesResponse::PartialSuccess(p.matching.as_ref().map(log_id_from_pb))
            }
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(&v)),
        },
    )
}

/// Vote request → protobuf.
pub fn vote_request_to_pb(r: &VoteRequest<TypeConfig>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: r.leadership_transfer,
    }
}

/// protobuf → vote request.
pub fn vote_request_from_pb(r: pb::VoteRequest) -> Result<VoteRequest<TypeConfig>, CodecError> {
    let vote = vote_from_pb(&r.vote.ok_or(missing("vote request", "vote"))?);
    let mut req = VoteRequest::new(vote, r.last_log_id.as_ref().map(log_id_from_pb));
    req.leadership_transfer = r.leadership_transfer;
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
    Ok(VoteResponse::new(
        vote,
        r.last_log_id.as_ref().map(log_id_from_pb),
        r.vote_granted,
    ))
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
    Ok(
        match r.result.ok_or(missing("stream-append reply", "result"))? {
            R::Flushed(p) => Ok(p.matching.as_ref().map(log_id_from_pb)),
            R::Conflict(id) => Err(StreamAppendError::Conflict(log_id_from_pb(&id))),
            R::HigherVote(v) => Err(StreamAppendError::HigherVote(vote_from_pb(&v))),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CommittedLeaderId, Entry, LogId, Vote};
    use openraft::EntryPayload;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId { term, node_id: 1 }, index),
            payload: EntryPayload::Blank,
        }
    }

    fn request(prev: Option<(u64, u64)>, entries: Vec<Entry>) -> pb::AppendEntriesRequest {
        append_request_to_pb(&AppendEntriesRequest {
            vote: Vote::new(3, 1),
            prev_log_id: prev.map(|(t, i)| {
                LogId::new(
                    CommittedLeaderId {
                        term: t,
                        node_id: 1,
                    },
                    i,
                )
            }),
            entries,
            leader_commit: None,
        })
    }

    #[test]
    fn consecutive_entries_are_accepted() {
        let r = request(Some((2, 9)), vec![entry(2, 10), entry(3, 11)]);
        assert_eq!(append_request_from_pb(r).unwrap().entries.len(), 2);
        assert!(append_request_from_pb(request(None, vec![entry(1, 0), entry(1, 1)])).is_ok());
    }

    /// Regression: a peer could send a batch with a gap or a term going
    /// backwards, which would reach openraft and could corrupt the log.
    #[test]
    fn gaps_and_decreasing_terms_are_refused() {
        assert!(append_request_from_pb(request(Some((2, 9)), vec![entry(2, 11)])).is_err());
        assert!(
            append_request_from_pb(request(Some((2, 9)), vec![entry(2, 10), entry(1, 11)]))
                .is_err()
        );
        assert!(append_request_from_pb(request(Some((3, 9)), vec![entry(2, 10)])).is_err());
    }
}
