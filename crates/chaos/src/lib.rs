//! Recording and checking histories of client operations for chaos tests.
//!
//! A chaos test runs clients against a Seshat cluster while it breaks nodes
//! and networks. Each client wraps every request in
//! [`Recorder::invoke`] / [`OpHandle::complete`], noting whether the request
//! succeeded ([`Outcome::Ok`]), definitely failed ([`Outcome::Fail`]), or
//! might have happened ([`Outcome::Unknown`], e.g. a timeout). Afterwards:
//!
//! - [`check`] decides whether the history is linearizable, key by key, for
//!   a register model (GET / SET / DEL), and shrinks each failure to a small
//!   sub-history that shows it ([`Violation`]);
//! - [`acknowledged_writes_visible`] checks the values read once the cluster
//!   has healed against the history;
//! - [`check_counters`] checks keys changed only by `INCR`: acknowledged
//!   values distinct and in real-time order, and the final value counting
//!   every acknowledged increment once (no increment lost or doubled);
//! - [`check_lists`] checks lists used as queues (`RPUSH`, `LPOP`) against
//!   their final contents: no acknowledged push lost, no value popped twice
//!   or from nowhere, first in first out;
//! - [`check_sets`] checks sets (`SADD`, `SREM`) against their final
//!   members: no acknowledged add lost, no member from nowhere or back
//!   after its removal;
//! - [`expired_keys_stay_expired`] checks that no read returns a value whose
//!   writes had all expired, and [`ttls_kept`] that keys written only with
//!   a TTL keep one;
//! - [`save_jsonl`] keeps a failing history for later study ([`load_jsonl`]
//!   reads it back).
//!
//! ```
//! use seshat_chaos::{check, OpKind, Outcome, Recorder};
//!
//! let recorder = Recorder::new();
//! let client = recorder.clone(); // one clone per client thread or task
//!
//! let op = client.invoke(1, "k", OpKind::Write(Some(b"v".to_vec())));
//! // ... send SET k v, wait for +OK ...
//! op.complete(Outcome::Ok(None));
//!
//! let op = client.invoke(2, "k", OpKind::Read);
//! // ... send GET k, receive "v" ...
//! op.complete(Outcome::Ok(Some(b"v".to_vec())));
//!
//! let result = check(&recorder.history());
//! assert!(result.ok, "{result}");
//! ```

mod checker;
mod counters;
mod expiry;
mod final_reads;
mod history;
mod lists;
mod report;
mod sets;

pub use checker::{
    check, check_register, check_with, CheckResult, CheckerConfig, Verdict, Violation,
    DEFAULT_MAX_SHRINK_STEPS, DEFAULT_MAX_STATES_PER_KEY, DEFAULT_SHRINK_MAX_STATES,
    DEFAULT_SHRINK_TOTAL_STATES,
};
pub use counters::{check_counters, CounterProblem, CounterViolation};
pub use expiry::{expired_keys_stay_expired, ttls_kept, ExpiryProblem, ExpiryViolation};
pub use final_reads::{
    acknowledged_writes_visible, acknowledged_writes_visible_with, FinalCollections, FinalReads,
    FINAL_READ_CLIENT,
};
pub use history::{
    load_jsonl, read_jsonl, save_jsonl, write_jsonl, HistoryError, Op, OpHandle, OpKind, Outcome,
    Recorder,
};
pub use lists::{check_lists, ListProblem, ListViolation};
pub use report::{KeyViolation, MAX_OPS_SHOWN};
pub use sets::{check_sets, SetProblem, SetViolation};
