//! Client authentication, ACL users and protected mode.
//!
//! Users are replicated (`seshat_commands::acl`, applied by the state
//! machine on every replica): every node keeps the same table and checks
//! every command against the connection's user before it runs. The
//! `default` user is special, as in Redis: until an ACL write touches it
//! (`ACL SETUSER default …`, `ACL LOAD`, `--aclfile`) it is this node's
//! `--requirepass` (`on nopass ~* &* +@all`, or with that password);
//! from then on the replicated user wins on every node and `CONFIG SET
//! requirepass` is refused. Only SHA-256 digests of passwords are kept,
//! and they are compared in constant time.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use seshat_commands::acl::{Denied, User, Users};
use seshat_commands::{Decl, Flags};
use seshat_raft::state_machine::UsersWatch;
use sha2::{Digest, Sha256};

pub use seshat_commands::acl::DEFAULT_USER;

/// Reply to a command that needs authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Reply to a wrong user or password.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Reply to the one-argument `AUTH` when no password is set.
pub const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
/// Reply to `HELLO` without `AUTH` from a client that must authenticate.
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
/// Reply to `CONFIG SET requirepass` once the replicated `default` user
/// exists.
pub const REQUIREPASS_REPLICATED: &str = "ERR CONFIG SET failed (possibly related to argument 'requirepass') - the default user is replicated (an ACL write changed it); set its password on every node at once with ACL SETUSER default resetpass >password";

/// The SHA-256 digest of a password. Its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordDigest([u8; 32]);

impl PasswordDigest {
    /// The digest of `password`; `None` for the empty password, which
    /// means "no password", as Redis's `requirepass ""` does.
    pub fn of(password: &[u8]) -> Option<Self> {
        (!password.is_empty()).then(|| Self(Sha256::digest(password).into()))
    }

    /// Lower-case hex, as ACL rules (`#…`) write digests.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordDigest(..)")
    }
}

/// Who a connection is: a user, and the log index that created it (0 for
/// `default`, which is never deleted).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user's rules when last looked up.
    pub user: Arc<User>,
    /// The user's name.
    pub name: Bytes,
    /// Index of the entry that created the user.
    pub created_index: u64,
}

/// The users, this node's `requirepass`, and the refusals counted.
#[derive(Debug)]
pub struct Auth {
    /// The `default` user as `requirepass` defines it, until an ACL write
    /// replicates one.
    fallback_default: RwLock<Arc<User>>,
    users: UsersWatch,
    failures: AtomicU64,
    denied_commands: AtomicU64,
    denied_keys: AtomicU64,
}

fn requirepass_user(password: Option<PasswordDigest>) -> Arc<User> {
    Arc::new(User::default_user(password.map(|p| p.hex())))
}

impl Auth {
    /// With `password` required (or none) until `users` has a `default`.
    pub fn new(password: Option<PasswordDigest>, users: UsersWatch) -> Self {
        Self {
            fallback_default: RwLock::new(requirepass_user(password)),
            users,
            failures: AtomicU64::new(0),
            denied_commands: AtomicU64::new(0),
            denied_keys: AtomicU64::new(0),
        }
    }

    /// The replicated users, and their changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Users>> {
        self.users.subscribe()
    }

    /// The stored users now.
    pub fn users(&self) -> Arc<Users> {
        self.users.borrow().clone()
    }

    /// Whether an ACL write replicated the `default` user (so
    /// `requirepass` no longer applies).
    pub fn default_replicated(&self) -> bool {
        self.users.borrow().get(DEFAULT_USER).is_some()
    }

    fn fallback(&self) -> Arc<User> {
        match self.fallback_default.read() {
            Ok(u) => u.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The `default` user in force: the replicated one, else this node's
    /// `requirepass`.
    pub fn default_user(&self, users: &Users) -> Arc<User> {
        users
            .get(DEFAULT_USER)
            .map_or_else(|| self.fallback(), |e| e.user.clone())
    }

    /// A new connection's identity: `default`.
    pub fn default_identity(&self) -> Identity {
        Identity {
            user: self.default_user(&self.users()),
            name: Bytes::from_static(DEFAULT_USER),
            created_index: 0,
        }
    }

    /// The current rules of `who`, or `None` if its user was deleted (or
    /// deleted and created again) since it logged in.
    pub fn refresh(&self, who: &Identity, users: &Users) -> Option<Arc<User>> {
        if who.name.as_ref() == DEFAULT_USER {
            return Some(self.default_user(users));
        }
        users
            .get(&who.name)
            .filter(|e| e.created_index == who.created_index)
            .map(|e| e.user.clone())
    }

    /// Whether connections must authenticate: the `default` user is off
    /// or has a password (Redis's `authRequired`).
    pub fn required(&self) -> bool {
        let d = self.default_user(&self.users());
        !(d.enabled() && d.nopass())
    }

    /// Replaces this node's `requirepass` (`None`: no password). It
    /// defines `default` only until an ACL write replicated one.
    pub fn set_password(&self, password: Option<PasswordDigest>) {
        let user = requirepass_user(password);
        match self.fallback_default.write() {
            Ok(mut p) => *p = user,
            Err(poisoned) => *poisoned.into_inner() = user,
        }
    }

    /// Who `user` with `password` logs in as, if they may (the user is
    /// enabled and the password matches, or it is `nopass`). A refusal is
    /// counted.
    pub fn check(&self, user: &[u8], password: &[u8]) -> Option<Identity> {
        let users = self.users();
        let found = if user == DEFAULT_USER {
            Some((self.default_user(&users), 0))
        } else {
            users.get(user).map(|e| (e.user.clone(), e.created_index))
        };
        match found {
            Some((u, created_index)) if u.check_password(password) => Some(Identity {
                user: u,
                name: Bytes::copy_from_slice(user),
                created_index,
            }),
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Failed `AUTH`/`HELLO … AUTH` attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Counts a command refused by the ACL rules.
    pub fn count_denied(&self, denied: Denied) {
        let counter = match denied {
            Denied::Command => &self.denied_commands,
            Denied::Key(_) => &self.denied_keys,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands refused since start because the user may not run them.
    pub fn denied_commands(&self) -> u64 {
        self.denied_commands.load(Ordering::Relaxed)
    }

    /// Commands refused since start because of a key the user may not
    /// touch.
    pub fn denied_keys(&self) -> u64 {
        self.denied_keys.load(Ordering::Relaxed)
    }

    /// Whether a client must still authenticate: it has not, and the
    /// default user requires it.
    pub fn must_authenticate(&self, authenticated: bool) -> bool {
        !authenticated && self.required()
    }

    /// Whether a client must authenticate before running `decl` (any
    /// command not flagged `no_auth`: all but `AUTH`, `HELLO`, `QUIT`).
    pub fn refuses(&self, authenticated: bool, decl: &Decl) -> bool {
        !authenticated && !decl.flags.has(Flags::NO_AUTH) && self.required()
    }
}

/// Protected mode: why a node listening for clients on `client_addr`
/// must not serve them, or `None` if it may. A non-loopback address
/// without a password would let anyone who reaches it read and write
/// everything.
pub fn protected_mode_refusal(
    client_addr: SocketAddr,
    password_set: bool,
    protected_mode: bool,
) -> Option<String> {
    if !protected_mode || password_set || client_addr.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "protected mode: {client_addr} is not a loopback address and no password is set, \
         so anyone who can reach it could read and write everything; bind a loopback \
         address (--client-addr 127.0.0.1:{port}), set a password (--requirepass), or \
         turn protected mode off (--protected-mode no)",
        port = client_addr.port()
    ))
}

/// Protected mode's word on the HTTP port: a warning when `/metrics` and
/// `/health` answer anyone who reaches a non-loopback `http_addr` in plain
/// HTTP, or `None`. Not a refusal: the endpoints show no data, and a
/// scraper on another host is the usual deployment.
pub fn http_exposure_warning(
    http_addr: SocketAddr,
    http_tls: bool,
    protected_mode: bool,
) -> Option<String> {
    if !protected_mode || http_tls || http_addr.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "protected mode: the HTTP endpoints on {http_addr} (metrics, health) are plain HTTP \
         on a non-loopback address; to require TLS, and with --tls-ca-cert-file a client \
         certificate, use --http-tls yes"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn auth(password: Option<PasswordDigest>) -> Auth {
        Auth::new(
            password,
            Arc::new(tokio::sync::watch::Sender::new(Arc::new(Users::default()))),
        )
    }

    #[test]
    fn without_a_password_the_default_user_logs_in_with_any() {
        let auth = auth(None);
        assert!(!auth.required());
        assert!(auth.check(b"default", b"anything").is_some());
        assert!(auth.check(b"someone", b"anything").is_none());
        assert_eq!(auth.failures(), 1);
    }

    #[test]
    fn with_a_password_only_it_logs_in() {
        let auth = auth(PasswordDigest::of(b"abc\0def"));
        assert!(auth.required());
        assert!(auth.check(b"default", b"abc\0def").is_some());
        assert!(auth.check(b"default", b"abc").is_none());
        assert!(auth.check(b"default", b"").is_none());
        assert!(auth.check(b"other", b"abc\0def").is_none());
        assert_eq!(auth.failures(), 3);
        auth.set_password(PasswordDigest::of(b"new"));
        assert!(auth.check(b"default", b"abc\0def").is_none());
        assert!(auth.check(b"default", b"new").is_some());
        auth.set_password(PasswordDigest::of(b""));
        assert!(!auth.required());
    }

    #[test]
    fn a_replicated_default_user_wins_over_requirepass() {
        let record = seshat_kv::UserRecord {
            created_index: 5,
            rules: Bytes::from_static(
                b"on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~* &* +@all",
            ),
        };
        let users = Users::from_records(vec![(Bytes::from_static(b"default"), record)]).unwrap();
        let a = Auth::new(
            PasswordDigest::of(b"node-password"),
            Arc::new(tokio::sync::watch::Sender::new(Arc::new(users))),
        );
        assert!(a.default_replicated());
        assert!(a.check(b"default", b"node-password").is_none());
        assert!(a.check(b"default", b"password").is_some());
    }

    #[test]
    fn a_digest_prints_as_hex_only_on_request() {
        let d = PasswordDigest::of(b"password").unwrap();
        assert_eq!(
            d.hex(),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn the_digest_is_not_shown() {
        let d = PasswordDigest::of(b"secret").unwrap();
        assert_eq!(format!("{d:?}"), "PasswordDigest(..)");
    }

    #[test]
    fn protected_mode_refuses_only_open_unprotected_addresses() {
        let any: SocketAddr = "0.0.0.0:6379".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let lo6: SocketAddr = "[::1]:6379".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6379".parse().unwrap();
        let why = protected_mode_refusal(any, false, true).unwrap();
        for way_out in [
            "--client-addr 127.0.0.1:6379",
            "--requirepass",
            "--protected-mode no",
        ] {
            assert!(why.contains(way_out), "{why}");
        }
        assert!(protected_mode_refusal(any, true, true).is_none());
        assert!(protected_mode_refusal(any, false, false).is_none());
        for addr in [lo, lo6, mapped] {
            assert!(
                protected_mode_refusal(addr, false, true).is_none(),
                "{addr}"
            );
        }
    }

    #[test]
    fn protected_mode_warns_of_plain_http_on_an_open_address_only() {
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let why = http_exposure_warning(any, false, true).unwrap();
        assert!(
            why.contains("0.0.0.0:9090") && why.contains("--http-tls yes"),
            "{why}"
        );
        assert!(http_exposure_warning(any, true, true).is_none());
        assert!(http_exposure_warning(any, false, false).is_none());
        assert!(http_exposure_warning(lo, false, true).is_none());
    }
}
