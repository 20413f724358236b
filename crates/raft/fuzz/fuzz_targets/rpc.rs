//! Fuzzes what peers send: the Raft RPC codec and the peer-input rules.
//! The first byte picks the message kind (and this node's id for the
//! local checks); the rest is the protobuf message. The checks are the
//! ones `tests/rpc_fuzz.rs` runs in CI.
//!
//! Run with `cargo +nightly fuzz run rpc` from `crates/raft` (the first
//! build compiles RocksDB, some 15 minutes on 2 cores).

#![no_main]

use libfuzzer_sys::fuzz_target;
use seshat_raft::peer_input::LocalView;
use seshat_raft::types::LogId;

#[path = "../../tests/support/rpc_oracle.rs"]
mod rpc_oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let committed = (selector & 0x80 != 0).then(|| {
        LogId::new(
            seshat_raft::types::CommittedLeaderId {
                term: 3,
                node_id: 1,
            },
            100,
        )
    });
    let mut vote = seshat_raft::types::Vote::new(u64::from(selector & 0x3), 1);
    vote.committed = selector & 0x4 != 0;
    let local = LocalView {
        node_id: u64::from((selector >> 4) & 0x7) + 1,
        committed,
        vote,
    };
    rpc_oracle::decode_and_check(selector % rpc_oracle::KINDS, message, &local);
});
