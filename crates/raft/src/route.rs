//! How a Raft RPC names the group and the replica it is for.
//!
//! Every Raft RPC (`AppendEntries`, `StreamAppend`, `Vote`, `PreVote`,
//! `InstallSnapshot`, `TransferLeader`; not the node-level `Forward`)
//! carries two gRPC metadata entries, canonical decimal ASCII:
//!
//! ```text
//! seshat-group:  the group id            (u32)
//! seshat-target: the target replica id  (u64, openraft's node id in the group)
//! ```
//!
//! The messages themselves are unchanged. A client stamps every request
//! with its [`Route`] (it is a tonic interceptor); the server reads it with
//! [`Route::of`] and refuses a request without one, or with a malformed
//! one, as an invalid argument.
//!
//! ```
//! use seshat_raft::route::Route;
//! let mut req = tonic::Request::new(());
//! Route::new(2, 7).stamp(&mut req);
//! assert_eq!(Route::of(&req).unwrap(), Route::new(2, 7));
//! assert!(Route::of(&tonic::Request::new(())).is_err());
//! ```

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

use crate::layout::GroupId;

/// Metadata key of the group id.
pub const GROUP_KEY: &str = "seshat-group";
/// Metadata key of the target replica id.
pub const TARGET_KEY: &str = "seshat-target";

/// The group and replica an RPC is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The Raft group.
    pub group: GroupId,
    /// The replica (openraft node id inside the group) the sender means to
    /// reach.
    pub target: u64,
}

impl Route {
    /// The route to replica `target` of `group`.
    pub fn new(group: GroupId, target: u64) -> Self {
        Self { group, target }
    }

    /// Adds this route to `req`'s metadata (replacing any there).
    pub fn stamp<T>(&self, req: &mut Request<T>) {
        let metadata = req.metadata_mut();
        metadata.insert(GROUP_KEY, MetadataValue::from(self.group));
        metadata.insert(TARGET_KEY, MetadataValue::from(self.target));
    }

    /// The route `req` carries; missing or malformed → `invalid_argument`.
    pub fn of<T>(req: &Request<T>) -> Result<Route, Status> {
        Self::from_metadata(req.metadata()).map_err(Status::invalid_argument)
    }

    /// The route in `metadata`, or why there is none.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Route, String> {
        let text = |key: &'static str| -> Result<&str, String> {
            let value = metadata
                .get(key)
                .ok_or_else(|| format!("request without {key} metadata"))?;
            value
                .to_str()
                .map_err(|_| format!("{key} metadata is not ASCII"))
        };
        parse(text(GROUP_KEY)?, text(TARGET_KEY)?)
    }
}

/// Parses a route's two values: canonical decimal (digits only, no sign,
/// no leading zero), within their types.
pub fn parse(group: &str, target: &str) -> Result<Route, String> {
    Ok(Route {
        group: decimal(GROUP_KEY, group)?,
        target: decimal(TARGET_KEY, target)?,
    })
}

fn decimal<T: std::str::FromStr>(key: &str, text: &str) -> Result<T, String> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    let bad = || format!("{key} metadata {text:?} is not a valid id");
    if !canonical {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

/// Stamps every request of a client with the route.
impl tonic::service::Interceptor for Route {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        self.stamp(&mut req);
        Ok(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_canonical_ids_in_range_are_accepted() {
        assert_eq!(parse("0", "1"), Ok(Route::new(0, 1)));
        assert_eq!(
            parse("4294967295", "18446744073709551615"),
            Ok(Route::new(u32::MAX, u64::MAX))
        );
        for (g, t) in [
            ("", "1"),
            ("1", ""),
            ("+1", "1"),
            ("-1", "1"),
            ("01", "1"),
            ("1", "007"),
            (" 1", "1"),
            ("1 ", "1"),
            ("4294967296", "1"),
            ("1", "18446744073709551616"),
            ("0x1", "1"),
        ] {
            assert!(parse(g, t).is_err(), "{g:?} {t:?}");
        }
    }

    #[test]
    fn missing_metadata_is_an_invalid_argument() {
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(GROUP_KEY, MetadataValue::from(1u32));
        let status = Route::of(&req).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(TARGET_KEY), "{status}");
    }

    proptest! {
        /// Any route survives the metadata; arbitrary text is an error or
        /// exactly the number it spells.
        #[test]
        fn routes_round_trip_and_text_never_panics(
            group in any::<u32>(), target in any::<u64>(),
            g in "[0-9+ -]{0,12}", t in "\\PC{0,24}",
        ) {
            let mut req = Request::new(());
            Route::new(group, target).stamp(&mut req);
            prop_assert_eq!(Route::of(&req).unwrap(), Route::new(group, target));
            if let Ok(r) = parse(&g, &t) {
                prop_assert_eq!(r.group.to_string(), g);
                prop_assert_eq!(r.target.to_string(), t);
            }
        }
    }
}
