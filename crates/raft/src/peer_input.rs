//! The rules every message from a peer must satisfy before openraft sees
//! it.
//!
//! openraft trusts its peers. A message no protocol-following cluster can
//! produce may trip an `assert!` that stops the Raft core (a snapshot whose
//! last log id lies beyond the leadership of the vote it comes with, say),
//! and a term near `u64::MAX` is adopted, persisted, and then overflows at
//! the next election, so no leader is ever elected again. The gRPC server
//! refuses every request that breaks a rule here, and the network client
//! every such reply, as an invalid argument.
//!
//! Two kinds of rule:
//!
//! * **shape** — true of the message alone: terms and indexes within
//!   [`MAX_ACCEPTED_TERM`] and [`MAX_ACCEPTED_LOG_INDEX`]; a leader's vote
//!   is committed and a candidate's is not; no log id lies beyond the vote
//!   it is sent with; entries follow `prev_log_id` with consecutive indexes
//!   and increasing log ids; a snapshot's membership is no newer than its
//!   last log id. Checked when a message is decoded ([`crate::rpc_codec`]).
//! * **local** — true of the message as seen by the node receiving it
//!   ([`LocalView`]): a peer never sends this node's own vote, never a
//!   log id that would replace an entry this node knows is committed, and
//!   a snapshot only with the vote of the leader this node follows.
//!   Checked by the gRPC server ([`crate::grpc_server`]).
//!
//! ```
//! use seshat_raft::peer_input::{check_vote_request, MAX_ACCEPTED_TERM};
//! use seshat_raft::types::Vote;
//! let req = openraft::raft::VoteRequest::new(Vote::new(MAX_ACCEPTED_TERM + 1, 2), None);
//! assert!(check_vote_request(&req).is_err());
//! ```

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
    TransferLeaderRequest, VoteRequest, VoteResponse,
};
use openraft::type_config::async_runtime::WatchReceiver;

use crate::codec::CodecError;
use crate::types::{Entry, LogId, Raft, SnapshotMeta, TypeConfig, Vote};

/// Highest term accepted from a peer. A term grows by one per election
/// attempt: at one attempt per millisecond, reaching 2^62 takes some 146
/// million years, so a larger term is forged or corrupt. Refusing it keeps
/// openraft's `term + 1` far from overflow (a wrapped term made every later
/// election fail).
pub const MAX_ACCEPTED_TERM: u64 = 1 << 62;

/// Highest log index accepted from a peer: 2^62 entries at ten million a
/// second is some 14,000 years of writes. openraft computes `index + 1`
/// throughout; a larger index is forged or corrupt.
pub const MAX_ACCEPTED_LOG_INDEX: u64 = 1 << 62;

// Whatever passes the checks can be incremented many times without
// overflow.
const _: () = assert!(MAX_ACCEPTED_TERM <= u64::MAX / 2 && MAX_ACCEPTED_LOG_INDEX <= u64::MAX / 2);

fn refuse(what: &'static str, field: &'static str, detail: String) -> CodecError {
    CodecError::Invalid {
        what,
        field,
        detail,
    }
}

fn check_term(what: &'static str, field: &'static str, term: u64) -> Result<(), CodecError> {
    if term > MAX_ACCEPTED_TERM {
        return Err(refuse(
            what,
            field,
            format!("term {term} exceeds {MAX_ACCEPTED_TERM}"),
        ));
    }
    Ok(())
}

/// A log id's term and index are within the accepted bounds.
pub fn check_log_id(what: &'static str, field: &'static str, id: &LogId) -> Result<(), CodecError> {
    check_term(what, field, id.leader_id.term)?;
    if id.index > MAX_ACCEPTED_LOG_INDEX {
        return Err(refuse(
            what,
            field,
            format!("log index {} exceeds {MAX_ACCEPTED_LOG_INDEX}", id.index),
        ));
    }
    Ok(())
}

fn check_opt_log_id(
    what: &'static str,
    field: &'static str,
    id: Option<&LogId>,
) -> Result<(), CodecError> {
    id.map_or(Ok(()), |id| check_log_id(what, field, id))
}

/// A vote's term is within the accepted bounds.
pub fn check_vote(what: &'static str, field: &'static str, vote: &Vote) -> Result<(), CodecError> {
    check_term(what, field, vote.leader_id.term)
}

/// `vote` is within bounds and committed exactly when `committed`: a
/// leader's messages carry the vote a quorum granted it, a candidate's the
/// vote it asks for.
fn check_vote_kind(what: &'static str, vote: &Vote, committed: bool) -> Result<(), CodecError> {
    check_vote(what, "vote", vote)?;
    if vote.committed != committed {
        let expected = if committed {
            "a leader's vote is committed"
        } else {
            "a candidate's vote is not committed"
        };
        return Err(refuse(what, "vote", format!("{vote}: {expected}")));
    }
    Ok(())
}

/// No leader holds a log id beyond its own vote: openraft asserts this of
/// snapshots, and a log id past the vote would break the log's order.
fn check_within_vote(
    what: &'static str,
    field: &'static str,
    id: Option<&LogId>,
    vote: &Vote,
) -> Result<(), CodecError> {
    check_opt_log_id(what, field, id)?;
    match id {
        Some(id) if id.leader_id > vote.leader_id => Err(refuse(
            what,
            field,
            format!("log id {id} lies beyond the sender's vote {vote}"),
        )),
        _ => Ok(()),
    }
}

/// The shape of an AppendEntries request: a leader's vote, log ids within
/// it, and entries that follow `prev_log_id` with consecutive indexes and
/// increasing log ids.
pub fn check_append_request(r: &AppendEntriesRequest<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "append-entries request";
    check_vote_kind(WHAT, &r.vote, true)?;
    check_within_vote(WHAT, "prev_log_id", r.prev_log_id.as_ref(), &r.vote)?;
    check_within_vote(WHAT, "leader_commit", r.leader_commit.as_ref(), &r.vote)?;
    let mut prev = r.prev_log_id.as_ref();
    for e in &r.entries {
        check_within_vote(WHAT, "entries", Some(&e.log_id), &r.vote)?;
        check_follows(WHAT, prev, e)?;
        prev = Some(&e.log_id);
    }
    Ok(())
}

/// `e` is the entry right after `prev`: the next index, and a log id no
/// older (a log's log ids increase with its indexes).
fn check_follows(what: &'static str, prev: Option<&LogId>, e: &Entry) -> Result<(), CodecError> {
    // `prev` is within bounds, so `+ 1` cannot overflow.
    let expected = prev.map_or(0, |p| p.index + 1);
    let older = prev.is_some_and(|p| e.log_id.leader_id < p.leader_id);
    if e.log_id.index != expected || older {
        let after = prev.map_or("the start of the log".to_string(), |p| p.to_string());
        return Err(refuse(
            what,
            "entries",
            format!("entry {} does not follow {after}", e.log_id),
        ));
    }
    Ok(())
}

/// The shape of a Vote or Pre-Vote request: a candidate's vote, and a last
/// log id within it.
pub fn check_vote_request(r: &VoteRequest<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "vote request";
    check_vote_kind(WHAT, &r.vote, false)?;
    check_within_vote(WHAT, "last_log_id", r.last_log_id.as_ref(), &r.vote)
}

/// The shape of a snapshot's announcement: a leader's vote, a last log id
/// within it, and a membership no newer than the last log id.
pub fn check_snapshot(vote: &Vote, meta: &SnapshotMeta) -> Result<(), CodecError> {
    const WHAT: &str = "snapshot";
    check_vote_kind(WHAT, vote, true)?;
    check_within_vote(WHAT, "last_log_id", meta.last_log_id.as_ref(), vote)?;
    let membership_id = meta.last_membership.log_id().as_ref();
    check_opt_log_id(WHAT, "membership_log_id", membership_id)?;
    if membership_id > meta.last_log_id.as_ref() {
        return Err(refuse(
            WHAT,
            "membership_log_id",
            format!(
                "membership of {membership_id:?} is newer than the last log id {:?}",
                meta.last_log_id
            ),
        ));
    }
    Ok(())
}

/// The shape of a leadership transfer: the leader's vote and a last log id
/// within it.
pub fn check_transfer_leader(r: &TransferLeaderRequest<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "transfer-leader request";
    check_vote_kind(WHAT, r.from_leader(), true)?;
    check_within_vote(WHAT, "last_log_id", r.last_log_id(), r.from_leader())
}

/// Bounds of an AppendEntries reply.
pub fn check_append_response(r: &AppendEntriesResponse<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "append-entries response";
    match r {
        AppendEntriesResponse::PartialSuccess(m) => check_opt_log_id(WHAT, "matching", m.as_ref()),
        AppendEntriesResponse::HigherVote(v) => check_vote(WHAT, "higher_vote", v),
        AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => Ok(()),
    }
}

/// Bounds of a pipelined append reply.
pub fn check_stream_result(r: &StreamAppendResult<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "stream-append reply";
    match r {
        Ok(flushed) => check_opt_log_id(WHAT, "flushed", flushed.as_ref()),
        Err(StreamAppendError::Conflict(id)) => check_log_id(WHAT, "conflict", id),
        Err(StreamAppendError::HigherVote(v)) => check_vote(WHAT, "higher_vote", v),
    }
}

/// Bounds of a Vote or Pre-Vote reply.
pub fn check_vote_response(r: &VoteResponse<TypeConfig>) -> Result<(), CodecError> {
    const WHAT: &str = "vote response";
    check_vote(WHAT, "vote", &r.vote)?;
    check_opt_log_id(WHAT, "last_log_id", r.last_log_id.as_ref())
}

/// What the receiving node knows that a peer's message must agree with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalView {
    /// This node's id.
    pub node_id: u64,
    /// The newest log id this node knows is committed. It only grows, so
    /// an older view refuses less, never more.
    pub committed: Option<LogId>,
    /// The vote this node holds: when committed, the leader it follows.
    pub vote: Vote,
}

impl LocalView {
    /// What `raft` knows now.
    pub fn of(raft: &Raft) -> Self {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        Self {
            node_id: *raft.node_id(),
            committed: m.local_committed,
            vote: m.vote,
        }
    }

    /// A peer speaks for itself: its vote never names this node. (With
    /// this node's committed vote, an append would make it a leader no
    /// election chose.)
    pub fn check_sender(&self, what: &'static str, vote: &Vote) -> Result<(), CodecError> {
        if vote.leader_id.node_id == self.node_id {
            return Err(refuse(
                what,
                "vote",
                format!("{vote} names this node, not the sender"),
            ));
        }
        Ok(())
    }

    /// `id` does not replace a committed entry. Every leader's log holds
    /// every committed entry, so a log id newer than the committed one
    /// lies at a greater index; one that does not would override a
    /// committed entry (openraft asserts this of snapshots).
    pub fn check_keeps_committed(
        &self,
        what: &'static str,
        field: &'static str,
        id: &LogId,
    ) -> Result<(), CodecError> {
        match &self.committed {
            Some(c) if id > c && id.index <= c.index => Err(refuse(
                what,
                field,
                format!("log id {id} would replace committed {c}"),
            )),
            _ => Ok(()),
        }
    }

    /// An AppendEntries request as this node sees it.
    pub fn check_append(&self, r: &AppendEntriesRequest<TypeConfig>) -> Result<(), CodecError> {
        const WHAT: &str = "append-entries request";
        self.check_sender(WHAT, &r.vote)?;
        if let Some(prev) = &r.prev_log_id {
            self.check_keeps_committed(WHAT, "prev_log_id", prev)?;
        }
        r.entries
            .iter()
            .try_for_each(|e| self.check_keeps_committed(WHAT, "entries", &e.log_id))
    }

    /// A snapshot announcement as this node sees it: it comes from the
    /// leader this node follows, and replaces no committed entry.
    ///
    /// openraft installs a snapshot sent with any leader's vote at least
    /// this node's, and adopts that vote: a member that is not the leader
    /// could announce itself leader of a later term and replace this
    /// node's state with its snapshot. Here the vote must be the very one
    /// this node holds, committed — the leader it already follows. A new
    /// leader's first message is never a snapshot: its appends (heartbeats
    /// included) make this node follow it first, and a snapshot refused
    /// meanwhile is sent again. A peer that copies the current leader's
    /// vote is not caught here: the certificates of mutual TLS admit
    /// members, not a node id ([`crate::peer_tls`]).
    ///
    /// The committed log id may advance between this check and openraft's
    /// install, so a forged snapshot racing live replication can still get
    /// past it; only a peer holding a vote at least this node's can try.
    pub fn check_snapshot(&self, vote: &Vote, meta: &SnapshotMeta) -> Result<(), CodecError> {
        const WHAT: &str = "snapshot";
        self.check_sender(WHAT, vote)?;
        if !(self.vote.committed && *vote == self.vote) {
            return Err(refuse(
                WHAT,
                "vote",
                format!(
                    "{vote} is not the leader this node follows ({}): only the current \
                     leader sends snapshots",
                    self.vote
                ),
            ));
        }
        match &meta.last_log_id {
            Some(last) => self.check_keeps_committed(WHAT, "last_log_id", last),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CommittedLeaderId, Membership, StoredMembership};
    use openraft::EntryPayload;

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId { term, node_id }, index)
    }

    fn committed(term: u64, node_id: u64) -> Vote {
        let mut v = Vote::new(term, node_id);
        v.committed = true;
        v
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Blank,
        }
    }

    fn append(
        vote: Vote,
        prev: Option<LogId>,
        entries: Vec<Entry>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote,
            prev_log_id: prev,
            entries,
            leader_commit: None,
        }
    }

    fn meta(last: Option<LogId>, membership_id: Option<LogId>) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: last,
            last_membership: StoredMembership::new(membership_id, Membership::default()),
        }
    }

    #[test]
    fn a_leaders_append_is_accepted() {
        let r = append(
            committed(3, 1),
            Some(log_id(2, 1, 9)),
            vec![entry(2, 10), entry(3, 11)],
        );
        assert!(check_append_request(&r).is_ok());
        assert!(check_append_request(&append(committed(1, 1), None, vec![entry(1, 0)])).is_ok());
    }

    /// Regression (issue 18): one AppendEntries with term 2^64−1 made every
    /// node adopt it; the next election's `term + 1` wrapped and no leader
    /// was ever elected again.
    #[test]
    fn issue_18_append_with_term_u64_max_is_refused() {
        let r = append(committed(u64::MAX, 2), None, vec![]);
        assert!(check_append_request(&r).is_err());
        let r = append(committed(MAX_ACCEPTED_TERM + 1, 2), None, vec![]);
        assert!(check_append_request(&r).is_err());
        assert!(
            check_append_request(&append(committed(MAX_ACCEPTED_TERM, 2), None, vec![])).is_ok()
        );
    }

    #[test]
    fn issue_18_log_index_near_overflow_is_refused() {
        let r = append(committed(3, 1), Some(log_id(3, 1, u64::MAX)), vec![]);
        assert!(check_append_request(&r).is_err());
        let mut r = append(committed(3, 1), None, vec![]);
        r.leader_commit = Some(log_id(3, 1, MAX_ACCEPTED_LOG_INDEX + 1));
        assert!(check_append_request(&r).is_err());
    }

    #[test]
    fn issue_18_vote_with_term_u64_max_is_refused() {
        let req = VoteRequest::new(Vote::new(u64::MAX, 2), None);
        assert!(check_vote_request(&req).is_err());
        let resp = VoteResponse::new(Vote::new(u64::MAX, 2), None, false);
        assert!(check_vote_response(&resp).is_err());
        let higher = AppendEntriesResponse::HigherVote(committed(u64::MAX, 2));
        assert!(check_append_response(&higher).is_err());
        let stream: StreamAppendResult<TypeConfig> =
            Err(StreamAppendError::HigherVote(committed(u64::MAX, 2)));
        assert!(check_stream_result(&stream).is_err());
    }

    /// Regression: a peer could send a batch with a gap or a term going
    /// backwards, which would reach openraft and could corrupt the log.
    #[test]
    fn gaps_and_decreasing_log_ids_are_refused() {
        let v = committed(3, 1);
        let gap = append(v, Some(log_id(2, 1, 9)), vec![entry(2, 11)]);
        assert!(check_append_request(&gap).is_err());
        let back = append(v, Some(log_id(2, 1, 9)), vec![entry(2, 10), entry(1, 11)]);
        assert!(check_append_request(&back).is_err());
        let behind_prev = append(v, Some(log_id(3, 1, 9)), vec![entry(2, 10)]);
        assert!(check_append_request(&behind_prev).is_err());
        let without_prev = append(v, None, vec![entry(2, 5)]);
        assert!(check_append_request(&without_prev).is_err());
        // Same term, lower leader: an older log id.
        let lower_leader = Entry {
            log_id: log_id(3, 0, 10),
            payload: EntryPayload::Blank,
        };
        let r = append(v, Some(log_id(3, 1, 9)), vec![lower_leader]);
        assert!(check_append_request(&r).is_err());
    }

    #[test]
    fn log_ids_beyond_the_vote_are_refused() {
        let r = append(committed(3, 1), None, vec![entry(4, 0)]);
        assert!(check_append_request(&r).is_err());
        let r = append(committed(3, 1), Some(log_id(3, 2, 4)), vec![]);
        assert!(check_append_request(&r).is_err());
        let req = VoteRequest::new(Vote::new(3, 2), Some(log_id(4, 1, 7)));
        assert!(check_vote_request(&req).is_err());
    }

    #[test]
    fn a_vote_of_the_wrong_kind_is_refused() {
        // An append from a candidate; a vote request with a granted vote.
        assert!(check_append_request(&append(Vote::new(3, 1), None, vec![])).is_err());
        assert!(check_vote_request(&VoteRequest::new(committed(3, 1), None)).is_err());
        assert!(
            check_vote_request(&VoteRequest::new(Vote::new(3, 1), Some(log_id(2, 1, 5)))).is_ok()
        );
    }

    /// Regression (issue 18): a snapshot whose last log id has a higher
    /// term than the sender's vote tripped an `assert!` in openraft and
    /// stopped the Raft core for good.
    #[test]
    fn issue_18_snapshot_beyond_its_vote_is_refused() {
        let forged = meta(Some(log_id(9, 1, 100)), Some(log_id(1, 1, 0)));
        assert!(check_snapshot(&committed(3, 1), &forged).is_err());
        // Same term, a higher leader than the vote's.
        let forged = meta(Some(log_id(3, 2, 100)), None);
        assert!(check_snapshot(&committed(3, 1), &forged).is_err());
        let honest = meta(Some(log_id(3, 1, 100)), Some(log_id(1, 1, 0)));
        assert!(check_snapshot(&committed(3, 1), &honest).is_ok());
        assert!(check_snapshot(&Vote::new(3, 1), &honest).is_err());
        let absurd = meta(Some(log_id(u64::MAX, 1, 100)), None);
        assert!(check_snapshot(&committed(u64::MAX, 1), &absurd).is_err());
    }

    #[test]
    fn snapshot_membership_newer_than_its_state_is_refused() {
        let m = meta(Some(log_id(3, 1, 10)), Some(log_id(3, 1, 11)));
        assert!(check_snapshot(&committed(3, 1), &m).is_err());
        let m = meta(None, Some(log_id(1, 1, 0)));
        assert!(check_snapshot(&committed(3, 1), &m).is_err());
    }

    #[test]
    fn transfer_leader_is_checked() {
        let ok = TransferLeaderRequest::new(committed(3, 1), 2, Some(log_id(3, 1, 7)));
        assert!(check_transfer_leader(&ok).is_ok());
        let absurd = TransferLeaderRequest::new(committed(u64::MAX, 1), 2, None);
        assert!(check_transfer_leader(&absurd).is_err());
        let beyond = TransferLeaderRequest::new(committed(3, 1), 2, Some(log_id(4, 1, 7)));
        assert!(check_transfer_leader(&beyond).is_err());
    }

    #[test]
    fn a_peer_never_sends_this_nodes_vote() {
        let local = LocalView {
            node_id: 2,
            committed: None,
            vote: committed(3, 1),
        };
        assert!(local
            .check_append(&append(committed(3, 2), None, vec![]))
            .is_err());
        assert!(local
            .check_append(&append(committed(3, 1), None, vec![]))
            .is_ok());
        assert!(local
            .check_snapshot(&committed(3, 2), &meta(None, None))
            .is_err());
    }

    /// Issue 17: a snapshot is accepted from the leader this node follows
    /// only — not from a member claiming a later term, not from an older
    /// leader, not while this node follows no one.
    #[test]
    fn snapshots_come_from_the_leader_this_node_follows_only() {
        let follower = LocalView {
            node_id: 2,
            committed: None,
            vote: committed(3, 1),
        };
        let m = meta(Some(log_id(3, 1, 20)), None);
        assert!(follower.check_snapshot(&committed(3, 1), &m).is_ok());
        // Node 3 claims a later term, or the same term: not the leader.
        assert!(follower.check_snapshot(&committed(4, 3), &m).is_err());
        assert!(follower.check_snapshot(&committed(3, 3), &m).is_err());
        // A deposed leader.
        let old = meta(Some(log_id(2, 1, 20)), None);
        assert!(follower.check_snapshot(&committed(2, 1), &old).is_err());
        // This node voted for a candidate and follows no leader yet.
        let voting = LocalView {
            vote: Vote::new(3, 1),
            ..follower
        };
        assert!(voting.check_snapshot(&committed(3, 1), &m).is_err());
    }

    /// Regression (issue 18): openraft asserts that a snapshot newer than
    /// the committed log id lies at a greater index.
    #[test]
    fn issue_18_log_ids_replacing_committed_entries_are_refused() {
        let local = LocalView {
            node_id: 2,
            committed: Some(log_id(2, 1, 10)),
            vote: committed(3, 1),
        };
        let v = committed(3, 1);
        // Newer than committed at an index not past it.
        assert!(local
            .check_snapshot(&v, &meta(Some(log_id(3, 1, 10)), None))
            .is_err());
        assert!(local
            .check_snapshot(&v, &meta(Some(log_id(3, 1, 4)), None))
            .is_err());
        assert!(local
            .check_append(&append(v, Some(log_id(3, 1, 8)), vec![]))
            .is_err());
        assert!(local
            .check_append(&append(v, Some(log_id(2, 1, 9)), vec![entry(3, 10)]))
            .is_err());
        // Older than committed (a stale message) or past it: fine.
        assert!(local
            .check_snapshot(&v, &meta(Some(log_id(1, 1, 4)), None))
            .is_ok());
        assert!(local
            .check_snapshot(&v, &meta(Some(log_id(3, 1, 11)), None))
            .is_ok());
        assert!(local
            .check_append(&append(v, Some(log_id(2, 1, 10)), vec![entry(3, 11)]))
            .is_ok());
    }
}
