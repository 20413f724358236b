//! Client authentication and protected mode.
//!
//! There is one user, `default`, as in Redis without ACLs: with no
//! password (`requirepass` unset) every connection starts authenticated;
//! with one, a connection must `AUTH` (or `HELLO … AUTH`) before anything
//! but the commands flagged `no_auth`. Only the SHA-256 digest of the
//! password is kept, and digests are compared in constant time.
//! `CONFIG SET requirepass` changes it at run time on this node; as in
//! Redis, connections already authenticated stay so.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use seshat_commands::{Decl, Flags};
use sha2::{Digest, Sha256};

/// The only user until ACL users arrive.
pub const DEFAULT_USER: &[u8] = b"default";

/// Reply to a command that needs authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// Reply to a wrong user or password.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Reply to the one-argument `AUTH` when no password is set.
pub const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
/// Reply to `HELLO` without `AUTH` from a client that must authenticate.
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// The SHA-256 digest of a password. Its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PasswordDigest([u8; 32]);

impl PasswordDigest {
    /// The digest of `password`; `None` for the empty password, which
    /// means "no password", as Redis's `requirepass ""` does.
    pub fn of(password: &[u8]) -> Option<Self> {
        (!password.is_empty()).then(|| Self(Sha256::digest(password).into()))
    }

    /// Compares in time independent of where the digests differ.
    fn matches(&self, other: &PasswordDigest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordDigest(..)")
    }
}

/// The default user's password, and the failed attempts counted.
#[derive(Debug)]
pub struct Auth {
    password: RwLock<Option<PasswordDigest>>,
    failures: AtomicU64,
}

impl Auth {
    /// With `password` required (or none).
    pub fn new(password: Option<PasswordDigest>) -> Self {
        Self {
            password: RwLock::new(password),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether a password is set, so connections must authenticate.
    pub fn required(&self) -> bool {
        self.password().is_some()
    }

    /// Replaces the password (`None`: no password).
    pub fn set_password(&self, password: Option<PasswordDigest>) {
        match self.password.write() {
            Ok(mut p) => *p = password,
            Err(poisoned) => *poisoned.into_inner() = password,
        }
    }

    /// Whether `user` with `password` may log in: the default user, with
    /// the password set (any password when none is, as Redis's `nopass`
    /// default user). A refusal is counted.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let ok = user == DEFAULT_USER
            && match self.password() {
                None => true,
                Some(expected) => {
                    PasswordDigest::of(password).is_some_and(|d| d.matches(&expected))
                }
            };
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Failed `AUTH`/`HELLO … AUTH` attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether a client must still authenticate: it has not, and a
    /// password is set.
    pub fn must_authenticate(&self, authenticated: bool) -> bool {
        !authenticated && self.required()
    }

    /// Whether a client must authenticate before running `decl` (any
    /// command not flagged `no_auth`: all but `AUTH`, `HELLO`, `QUIT`).
    pub fn refuses(&self, authenticated: bool, decl: &Decl) -> bool {
        !decl.flags.has(Flags::NO_AUTH) && self.must_authenticate(authenticated)
    }

    fn password(&self) -> Option<PasswordDigest> {
        match self.password.read() {
            Ok(p) => *p,
            Err(poisoned) => *poisoned.into_inner(),
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn without_a_password_the_default_user_logs_in_with_any() {
        let auth = Auth::new(None);
        assert!(!auth.required());
        assert!(auth.check(b"default", b"anything"));
        assert!(!auth.check(b"someone", b"anything"));
        assert_eq!(auth.failures(), 1);
    }

    #[test]
    fn with_a_password_only_it_logs_in() {
        let auth = Auth::new(PasswordDigest::of(b"abc\0def"));
        assert!(auth.required());
        assert!(auth.check(b"default", b"abc\0def"));
        assert!(!auth.check(b"default", b"abc"));
        assert!(!auth.check(b"default", b""));
        assert!(!auth.check(b"other", b"abc\0def"));
        assert_eq!(auth.failures(), 3);
        auth.set_password(PasswordDigest::of(b"new"));
        assert!(!auth.check(b"default", b"abc\0def"));
        assert!(auth.check(b"default", b"new"));
        auth.set_password(PasswordDigest::of(b""));
        assert!(!auth.required());
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
}
