//! ACL users: Redis's `ACL SETUSER` grammar, the permission check every
//! command passes before it runs, and `ACL LIST`/`ACL GETUSER`'s
//! descriptions — all derived from the command declarations (categories
//! from [`Decl::categories`], keys from [`Decl::keys`], read or write from
//! the flags).
//!
//! A user's command permissions are a bitmap over every declaration
//! (subcommands included), as in Redis 7.0: `+@string` sets the bits of
//! the string commands, `-get` clears one, `+@all` sets every bit and
//! remembers that future commands are allowed too. `ACL LIST` describes
//! the bitmap back as rules with Redis's greedy algorithm (the category
//! that explains the most bits, then single commands), so what it prints
//! re-creates the same bitmap.
//!
//! Users are stored as their description ([`User::describe`]) and rebuilt
//! from it ([`User::from_rules`]): the replicated state is the rules, the
//! bitmap is derived by each binary.
//!
//! ```
//! use bytes::Bytes;
//! use seshat_commands::acl::{Denied, User};
//!
//! let rules: Vec<Bytes> = ["on", ">secret", "~app:*", "+@read"].map(Bytes::from).to_vec();
//! let user = User::from_rules(Bytes::from_static(b"alice"), &rules)?;
//! assert!(user.check_password(b"secret"));
//! assert_eq!(user.describe(), "on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b ~app:* resetchannels -@all +@read");
//! let get = seshat_commands::lookup(b"get").unwrap();
//! let argv = |a: &[&str]| a.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect::<Vec<_>>();
//! assert_eq!(user.check(get, &argv(&["GET", "app:1"])), Ok(()));
//! assert_eq!(user.check(get, &argv(&["GET", "other"])), Err(Denied::Key(1)));
//! let set = seshat_commands::lookup(b"set").unwrap();
//! assert_eq!(user.check(set, &argv(&["SET", "app:1", "v"])), Err(Denied::Command));
//! # Ok::<(), seshat_commands::acl::RuleError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use seshat_kv::{AclWrite, KvError, UserDef, UserRecord};
use seshat_protocol_resp::Frame;
use sha2::{Digest, Sha256};

use crate::decl::{Decl, Flags, ACL_CATEGORIES};
use crate::exec::Ctx;
use crate::glob_match;
use crate::table;

/// The user every connection starts as.
pub const DEFAULT_USER: &[u8] = b"default";
/// Most users, `default` included.
pub const MAX_USERS: usize = 1024;
/// Longest user name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 128;
/// Most passwords one user may have.
pub const MAX_PASSWORDS_PER_USER: usize = 32;
/// Most key and channel patterns one user may have, together.
pub const MAX_PATTERNS_PER_USER: usize = 256;
/// Longest key or channel pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Most allowed first arguments (`+select|0`) one user may have.
pub const MAX_FIRST_ARGS_PER_USER: usize = 256;
/// Longest stored description of a user, in bytes (bounded by the limits
/// above; checked so a record can never grow past it).
pub const MAX_USER_RULES_BYTES: usize = 512 * 1024;

/// Redis's reply when a user name has a space or a NUL.
pub const NAME_WITH_SPACES: &str = "ERR Usernames can't contain spaces or null characters";

// ------------------------------------------------------------ command ids

/// Every declaration (subcommands after their container) with an id: its
/// bit in a user's command bitmap.
struct CommandTable {
    decls: Vec<&'static Decl>,
    by_name: HashMap<&'static str, usize>,
    /// The ids of each container's subcommands.
    children: Vec<Vec<usize>>,
    /// Each declaration's categories, as bits over [`ACL_CATEGORIES`].
    categories: Vec<u32>,
}

static TABLE: LazyLock<CommandTable> = LazyLock::new(|| {
    let mut t = CommandTable {
        decls: Vec::new(),
        by_name: HashMap::new(),
        children: Vec::new(),
        categories: Vec::new(),
    };
    for decl in table::all() {
        let parent = t.push(decl);
        for sub in decl.subcommands {
            let child = t.push(sub);
            if let Some(c) = t.children.get_mut(parent) {
                c.push(child);
            }
        }
    }
    t
});

impl CommandTable {
    fn push(&mut self, decl: &'static Decl) -> usize {
        let id = self.decls.len();
        self.decls.push(decl);
        self.by_name.insert(decl.name, id);
        self.children.push(Vec::new());
        let bits = decl
            .categories()
            .iter()
            .filter_map(|c| category_index(c.trim_start_matches('@')))
            .fold(0u32, |acc, i| acc | (1 << i));
        self.categories.push(bits);
        id
    }

    fn id(&self, decl: &Decl) -> Option<usize> {
        self.by_name.get(decl.name).copied()
    }

    fn words(&self) -> usize {
        self.decls.len().div_ceil(64)
    }
}

/// The index of category `name` (without `@`, any case) in
/// [`ACL_CATEGORIES`].
fn category_index(name: &str) -> Option<usize> {
    ACL_CATEGORIES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
}

/// Whether `name` is one of Redis's categories (without `@`, any case).
pub fn is_category(name: &[u8]) -> bool {
    std::str::from_utf8(name)
        .ok()
        .and_then(category_index)
        .is_some()
}

/// The categories at least one declared command belongs to, in Redis's
/// order (`ACL CAT`). Redis lists all 21; Seshat leaves out those none of
/// its commands is in (`@stream`, `@pubsub`, …), since a rule naming only
/// those changes nothing.
pub fn categories_in_use() -> Vec<&'static str> {
    let used = TABLE.categories.iter().fold(0u32, |a, c| a | c);
    ACL_CATEGORIES
        .iter()
        .enumerate()
        .filter(|(i, _)| used & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The full names of the commands in category `name` (`ACL CAT name`),
/// `None` if it is not a category.
pub fn commands_in_category(name: &[u8]) -> Option<Vec<&'static str>> {
    let index = category_index(std::str::from_utf8(name).ok()?)?;
    Some(
        TABLE
            .decls
            .iter()
            .zip(&TABLE.categories)
            .filter(|(_, c)| *c & (1 << index) != 0)
            .map(|(d, _)| d.name)
            .collect(),
    )
}

// ------------------------------------------------------------ users

/// A key pattern and the access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    pattern: Bytes,
    read: bool,
    write: bool,
}

impl KeyPattern {
    fn describe(&self, out: &mut String) {
        out.push_str(match (self.read, self.write) {
            (true, false) => "%R~",
            (false, true) => "%W~",
            _ => "~",
        });
        out.push_str(&String::from_utf8_lossy(&self.pattern));
    }
}

/// `sanitize-payload` / `skip-sanitize-payload`: accepted and shown as
/// Redis does (Seshat has no `RESTORE` payloads to sanitize).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sanitize {
    Unset,
    On,
    Skip,
}

/// One ACL user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    name: Bytes,
    enabled: bool,
    nopass: bool,
    sanitize: Sanitize,
    /// Lower-case hex SHA-256 digests.
    passwords: Vec<String>,
    allkeys: bool,
    keys: Vec<KeyPattern>,
    allchannels: bool,
    channels: Vec<Bytes>,
    /// Every bit set by `+@all` and none cleared since: no check needed.
    allcommands: bool,
    /// `+@all` given and no `-@all` since: `ACL LIST` starts from `+@all`
    /// (commands added later are allowed).
    future: bool,
    commands: Vec<u64>,
    /// Allowed first arguments of otherwise denied commands (`+select|0`).
    first_args: BTreeMap<usize, Vec<Bytes>>,
}

/// Why `ACL SETUSER` refused a rule (Redis's `ACLSetUserStringError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `+nosuchcommand`, `-@nosuchcategory`.
    #[error("Unknown command or category name in ACL")]
    UnknownName,
    /// A rule that means nothing.
    #[error("Syntax error")]
    Syntax,
    /// `~pattern` after `allkeys`.
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    PatternAfterAllKeys,
    /// `&pattern` after `allchannels`.
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    PatternAfterAllChannels,
    /// `<password` the user does not have.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `#hash` that is not one.
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    /// `+config|get|x`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSubcommand,
    /// `(selector)`.
    #[error("Selectors are not supported by Seshat")]
    Selectors,
    /// A bound on users' sizes.
    #[error("{0}")]
    Limit(&'static str),
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run the command.
    Command,
    /// The user may not touch the key at this argument index.
    Key(usize),
}

impl Denied {
    /// The `-NOPERM` reply Redis gives at the top level (`processCommand`).
    pub fn reply(self, decl: &Decl) -> String {
        match self {
            Denied::Command => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                decl.name
            ),
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
        }
    }

    /// The `-NOPERM` reply Redis gives at `EXEC` for a queued command the
    /// rules no longer allow.
    pub fn exec_reply(self) -> String {
        let reason = match self {
            Denied::Command => "no permission to execute the command or subcommand",
            Denied::Key(_) => "no permission to touch the specified keys",
        };
        format!(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated and \
             the EXEC call. This command is no longer allowed for the following reason: {reason}"
        )
    }

    /// `ACL DRYRUN`'s answer (a bulk string, as Redis gives it).
    pub fn dryrun(self, decl: &Decl, argv: &[Bytes]) -> String {
        match self {
            Denied::Command => format!(
                "This user has no permissions to run the '{}' command",
                decl.name
            ),
            Denied::Key(i) => format!(
                "This user has no permissions to access the '{}' key",
                String::from_utf8_lossy(argv.get(i).map_or(&b""[..], |a| a))
            ),
        }
    }
}

/// Whether a user name is acceptable: Redis refuses spaces and NULs.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter()
        .any(|b| b.is_ascii_whitespace() || *b == 0 || *b == 0x0b)
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64
        && h.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

impl User {
    /// A user as `ACL SETUSER` creates it: off, no password, no keys, no
    /// channels (Redis 7's `acl-pubsub-default resetchannels`), no
    /// commands.
    pub fn new(name: Bytes) -> Self {
        Self {
            name,
            enabled: false,
            nopass: false,
            sanitize: Sanitize::Unset,
            passwords: Vec::new(),
            allkeys: false,
            keys: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
            allcommands: false,
            future: false,
            commands: vec![0; TABLE.words()],
            first_args: BTreeMap::new(),
        }
    }

    /// Redis's initial `default` user: `on nopass ~* &* +@all`, with
    /// `password` (a digest) instead of `nopass` when given.
    pub fn default_user(password_sha256_hex: Option<String>) -> Self {
        let mut u = User::new(Bytes::from_static(DEFAULT_USER));
        u.enabled = true;
        u.allkeys = true;
        u.allchannels = true;
        u.set_all_commands(true);
        match password_sha256_hex {
            Some(h) => u.passwords.push(h),
            None => u.nopass = true,
        }
        u
    }

    /// A new user `name` with `rules` applied, all or none.
    pub fn from_rules(name: Bytes, rules: &[Bytes]) -> Result<Self, RuleError> {
        let mut u = User::new(name);
        u.apply_all(rules).map_err(|(_, e)| e)?;
        Ok(u)
    }

    /// The user's name.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// Whether the user may log in.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether any password logs in.
    pub fn nopass(&self) -> bool {
        self.nopass
    }

    /// Whether `password` logs this user in (enabled, and `nopass` or a
    /// digest that matches, compared in constant time).
    pub fn check_password(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = sha256_hex(password);
        self.passwords.iter().fold(false, |found, stored| {
            let same = stored
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
            found | same
        })
    }

    /// Applies `rules` in order to a copy and keeps it only if all apply;
    /// on failure, the rule that failed and why.
    pub fn apply_all(&mut self, rules: &[Bytes]) -> Result<(), (Bytes, RuleError)> {
        let mut staged = self.clone();
        for rule in rules {
            staged.apply(rule).map_err(|e| (rule.clone(), e))?;
        }
        staged.check_limits().map_err(|e| {
            (
                rules.last().cloned().unwrap_or_default(),
                RuleError::Limit(e),
            )
        })?;
        *self = staged;
        Ok(())
    }

    fn check_limits(&self) -> Result<(), &'static str> {
        if self.passwords.len() > MAX_PASSWORDS_PER_USER {
            return Err("too many passwords for one user (at most 32)");
        }
        if self.keys.len() + self.channels.len() > MAX_PATTERNS_PER_USER {
            return Err("too many key and channel patterns for one user (at most 256)");
        }
        if self.first_args.values().map(Vec::len).sum::<usize>() > MAX_FIRST_ARGS_PER_USER {
            return Err("too many allowed first arguments for one user (at most 256)");
        }
        Ok(())
    }

    /// Applies one rule (Redis's `ACLSetUser`).
    fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if op.is_empty() {
            return Ok(());
        }
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Sanitize::Skip;
        } else if is("sanitize-payload") {
            self.sanitize = Sanitize::On;
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if is("reset") {
            self.nopass = false;
            self.passwords.clear();
            self.allkeys = false;
            self.keys.clear();
            self.allchannels = false;
            self.channels.clear();
            self.enabled = false;
            self.sanitize = Sanitize::On;
            self.set_all_commands(false);
        } else if is("clearselectors") {
            // No selectors besides the root one.
        } else if op.first() == Some(&b'(') && op.last() == Some(&b')') {
            return Err(RuleError::Selectors);
        } else if let Some(rest) = op.strip_prefix(b">") {
            self.add_password(sha256_hex(rest));
        } else if let Some(rest) = op.strip_prefix(b"#") {
            if !valid_hash(rest) {
                return Err(RuleError::BadHash);
            }
            self.add_password(String::from_utf8_lossy(rest).into_owned());
        } else if let Some(rest) = op.strip_prefix(b"<") {
            self.remove_password(&sha256_hex(rest))?;
        } else if let Some(rest) = op.strip_prefix(b"!") {
            if !valid_hash(rest) {
                return Err(RuleError::BadHash);
            }
            self.remove_password(&String::from_utf8_lossy(rest))?;
        } else {
            self.apply_selector_rule(op)?;
        }
        Ok(())
    }

    fn add_password(&mut self, digest: String) {
        if !self.passwords.contains(&digest) {
            self.passwords.push(digest);
        }
        self.nopass = false;
    }

    fn remove_password(&mut self, digest: &str) -> Result<(), RuleError> {
        let before = self.passwords.len();
        self.passwords.retain(|p| p != digest);
        if self.passwords.len() == before {
            return Err(RuleError::NoSuchPassword);
        }
        Ok(())
    }

    /// Keys, channels and commands (Redis's `ACLSetSelector`).
    fn apply_selector_rule(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if is("allkeys") || op == b"~*" {
            self.allkeys = true;
            self.keys.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.keys.clear();
        } else if is("allchannels") || op == b"&*" {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.set_all_commands(true);
        } else if is("nocommands") || is("-@all") {
            self.set_all_commands(false);
        } else if matches!(op.first(), Some(b'~' | b'%')) {
            self.add_key_pattern(op)?;
        } else if let Some(pattern) = op.strip_prefix(b"&") {
            if self.allchannels {
                return Err(RuleError::PatternAfterAllChannels);
            }
            check_pattern(pattern)?;
            let pattern = Bytes::copy_from_slice(pattern);
            if !self.channels.contains(&pattern) {
                self.channels.push(pattern);
            }
        } else if let Some(category) = op.strip_prefix(b"+@").or_else(|| op.strip_prefix(b"-@")) {
            let allow = op.first() == Some(&b'+');
            let index = std::str::from_utf8(category)
                .ok()
                .and_then(category_index)
                .ok_or(RuleError::UnknownName)?;
            self.set_category(index, allow);
        } else if let Some(name) = op.strip_prefix(b"+") {
            self.allow_command(name)?;
        } else if let Some(name) = op.strip_prefix(b"-") {
            let id = table::lookup_fullname(name)
                .and_then(|d| TABLE.id(d))
                .ok_or(RuleError::UnknownName)?;
            self.change_perm(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if self.allkeys {
            return Err(RuleError::PatternAfterAllKeys);
        }
        let (read, write, pattern) = if let Some(rest) = op.strip_prefix(b"%") {
            let tilde = rest
                .iter()
                .position(|b| *b == b'~')
                .ok_or(RuleError::Syntax)?;
            let (flags, pattern) = rest.split_at(tilde);
            let (mut read, mut write) = (false, false);
            for f in flags {
                match f.to_ascii_uppercase() {
                    b'R' if !read => read = true,
                    b'W' if !write => write = true,
                    _ => return Err(RuleError::Syntax),
                }
            }
            if !read && !write {
                return Err(RuleError::Syntax);
            }
            (read, write, pattern.get(1..).unwrap_or_default())
        } else {
            (true, true, op.get(1..).unwrap_or_default())
        };
        check_pattern(pattern)?;
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(existing) => {
                existing.read |= read;
                existing.write |= write;
            }
            None => self.keys.push(KeyPattern {
                pattern: Bytes::copy_from_slice(pattern),
                read,
                write,
            }),
        }
        Ok(())
    }

    /// `+name`: a command, a subcommand, or a first argument of a command
    /// without subcommands (`+select|0`).
    fn allow_command(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let Some(bar) = name.iter().rposition(|b| *b == b'|') else {
            let id = table::lookup_fullname(name)
                .and_then(|d| TABLE.id(d))
                .ok_or(RuleError::UnknownName)?;
            self.change_perm(id, true);
            return Ok(());
        };
        let (parent_name, sub) = (
            name.get(..bar).unwrap_or_default(),
            name.get(bar + 1..).unwrap_or_default(),
        );
        let parent = table::lookup_fullname(parent_name).ok_or(RuleError::UnknownName)?;
        if parent.name.contains('|') {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if parent.subcommands.is_empty() {
            let id = TABLE.id(parent).ok_or(RuleError::UnknownName)?;
            let args = self.first_args.entry(id).or_default();
            if !args.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                args.push(Bytes::copy_from_slice(sub));
            }
        } else {
            let id = table::lookup_fullname(name)
                .and_then(|d| TABLE.id(d))
                .ok_or(RuleError::UnknownName)?;
            self.change_perm(id, true);
        }
        Ok(())
    }

    fn bit(&self, id: usize) -> bool {
        self.commands
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn set_bit(&mut self, id: usize, value: bool) {
        if let Some(w) = self.commands.get_mut(id / 64) {
            if value {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
                self.allcommands = false;
            }
        }
    }

    /// Allows or denies a command and, for a container, its subcommands
    /// (Redis's `ACLChangeSelectorPerm`).
    fn change_perm(&mut self, id: usize, allow: bool) {
        self.set_bit(id, allow);
        self.first_args.remove(&id);
        if let Some(children) = TABLE.children.get(id) {
            for &child in children {
                self.set_bit(child, allow);
            }
        }
    }

    fn set_category(&mut self, index: usize, allow: bool) {
        for (id, cats) in TABLE.categories.iter().enumerate() {
            if cats & (1 << index) != 0 {
                self.change_perm(id, allow);
            }
        }
    }

    fn set_all_commands(&mut self, allow: bool) {
        let fill = if allow { u64::MAX } else { 0 };
        self.commands.iter_mut().for_each(|w| *w = fill);
        self.allcommands = allow;
        self.future = allow;
        self.first_args.clear();
    }

    /// Whether the user may run `argv` (a request for `decl`): the
    /// command (or its first argument), then every key it names — read
    /// commands need read access (`%R~`), writes write access (`%W~`).
    pub fn check(&self, decl: &Decl, argv: &[Bytes]) -> Result<(), Denied> {
        if !self.allcommands && !decl.flags.has(Flags::NO_AUTH) {
            let id = TABLE.id(decl).ok_or(Denied::Command)?;
            if !self.bit(id) {
                let index = if decl.name.contains('|') { 2 } else { 1 };
                let allowed = match (self.first_args.get(&id), argv.get(index)) {
                    (Some(args), Some(first)) => args.iter().any(|a| a.eq_ignore_ascii_case(first)),
                    _ => false,
                };
                if !allowed {
                    return Err(Denied::Command);
                }
            }
        }
        if self.allkeys {
            return Ok(());
        }
        let read = decl.flags.has(Flags::READONLY);
        let write = decl.flags.has(Flags::WRITE);
        for i in decl.keys.positions(argv.len()) {
            let Some(key) = argv.get(i) else { continue };
            let ok = self.keys.iter().any(|p| {
                (p.read || !read) && (p.write || !write) && glob_match(&p.pattern, key, false)
            });
            if !ok {
                return Err(Denied::Key(i));
            }
        }
        Ok(())
    }

    /// Whether the user may run every command and touch every key: no
    /// check is needed.
    pub fn unrestricted(&self) -> bool {
        self.allcommands && self.allkeys
    }

    fn flags(&self) -> Vec<&'static str> {
        let mut out = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            out.push("nopass");
        }
        match self.sanitize {
            Sanitize::Unset => {}
            Sanitize::Skip => out.push("skip-sanitize-payload"),
            Sanitize::On => out.push("sanitize-payload"),
        }
        out
    }

    fn keys_text(&self) -> String {
        if self.allkeys {
            return "~*".into();
        }
        let mut out = String::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            k.describe(&mut out);
        }
        out
    }

    fn channels_text(&self) -> String {
        if self.allchannels {
            return "&*".into();
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command rules that re-create this user's bitmap, starting with
    /// `+@all` or `-@all` (Redis's `ACLDescribeSelectorCommandRules`).
    pub fn command_rules(&self) -> String {
        let additive = !self.future;
        let mut rules = vec![if additive { "-@all" } else { "+@all" }.to_string()];
        let mut fake = User::new(Bytes::new());
        fake.set_all_commands(!additive);
        // Categories first: each round, the one that explains most of the
        // bits still to explain with fewest exceptions.
        let mut temp = self.commands.clone();
        let mut applied = [false; ACL_CATEGORIES.len()];
        loop {
            let mut best: Option<(usize, usize, usize)> = None;
            for (index, done) in applied.iter().enumerate() {
                if *done {
                    continue;
                }
                let (on, off) = count_category(&temp, index);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                let better = match best {
                    None => true,
                    Some((_, min_diff, max_same)) => {
                        diff < min_diff || (diff == min_diff && same > max_same)
                    }
                };
                if same > diff && better {
                    best = Some((index, diff, same));
                }
            }
            let Some((index, ..)) = best else { break };
            let name = ACL_CATEGORIES.get(index).copied().unwrap_or_default();
            rules.push(format!("{}@{name}", if additive { '+' } else { '-' }));
            fake.set_category(index, additive);
            set_category_bits(&mut temp, index, !additive);
            if let Some(a) = applied.get_mut(index) {
                *a = true;
            }
        }
        // Then single commands, parents before their subcommands.
        for (id, decl) in TABLE.decls.iter().enumerate() {
            let (mine, theirs) = (self.bit(id), fake.bit(id));
            if mine != theirs {
                rules.push(format!("{}{}", if mine { '+' } else { '-' }, decl.name));
                fake.change_perm(id, mine);
            }
            if !mine {
                for arg in self.first_args.get(&id).into_iter().flatten() {
                    rules.push(format!("+{}|{}", decl.name, String::from_utf8_lossy(arg)));
                }
            }
        }
        debug_assert_eq!(
            fake.commands, self.commands,
            "rules must re-create the bitmap"
        );
        rules.join(" ")
    }

    /// The user's rules as `ACL LIST` shows them after `user <name> `:
    /// flags, passwords, keys, channels, commands. Re-applied to a new
    /// user, they give this user back.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.flags().into_iter().map(String::from).collect();
        parts.extend(self.passwords.iter().map(|p| format!("#{p}")));
        if self.allkeys {
            parts.push("~*".into());
        } else {
            for k in &self.keys {
                let mut s = String::new();
                k.describe(&mut s);
                parts.push(s);
            }
        }
        if self.allchannels {
            parts.push("&*".into());
        } else {
            parts.push("resetchannels".into());
            parts.extend(
                self.channels
                    .iter()
                    .map(|c| format!("&{}", String::from_utf8_lossy(c))),
            );
        }
        parts.push(self.command_rules());
        parts.join(" ")
    }

    /// `ACL GETUSER`'s reply: flags, passwords, commands, keys, channels,
    /// selectors (none).
    pub fn getuser_frame(&self) -> Frame {
        let bulk = |s: String| Frame::Bulk(Bytes::from(s));
        Frame::Map(vec![
            (
                Frame::bulk("flags"),
                Frame::Set(self.flags().into_iter().map(Frame::bulk).collect()),
            ),
            (
                Frame::bulk("passwords"),
                Frame::Array(self.passwords.iter().map(|p| bulk(p.clone())).collect()),
            ),
            (Frame::bulk("commands"), bulk(self.command_rules())),
            (Frame::bulk("keys"), bulk(self.keys_text())),
            (Frame::bulk("channels"), bulk(self.channels_text())),
            (Frame::bulk("selectors"), Frame::Array(Vec::new())),
        ])
    }
}

fn check_pattern(pattern: &[u8]) -> Result<(), RuleError> {
    if has_spaces(pattern) {
        return Err(RuleError::Syntax);
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(RuleError::Limit("pattern too long (at most 1024 bytes)"));
    }
    Ok(())
}

fn count_category(bits: &[u64], index: usize) -> (usize, usize) {
    let (mut on, mut off) = (0, 0);
    for (id, cats) in TABLE.categories.iter().enumerate() {
        if cats & (1 << index) != 0 {
            if bits.get(id / 64).is_some_and(|w| w & (1 << (id % 64)) != 0) {
                on += 1;
            } else {
                off += 1;
            }
        }
    }
    (on, off)
}

/// Sets the bits of category `index`'s commands, and their subcommands,
/// in `bits`.
fn set_category_bits(bits: &mut [u64], index: usize, value: bool) {
    let mut set = |id: usize| {
        if let Some(w) = bits.get_mut(id / 64) {
            if value {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
            }
        }
    };
    for (id, cats) in TABLE.categories.iter().enumerate() {
        if cats & (1 << index) != 0 {
            set(id);
            for &child in TABLE.children.get(id).into_iter().flatten() {
                set(child);
            }
        }
    }
}

// ------------------------------------------------------------ the table

/// A user as the table holds it: its rules, and the log index that
/// created it (a connection logged in as a deleted and re-created user is
/// closed).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The user.
    pub user: Arc<User>,
    /// Index of the log entry that created it.
    pub created_index: u64,
}

/// Every stored ACL user, by name. `default` is here only once an ACL
/// write touched it; until then the node's `requirepass` defines it.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: BTreeMap<Bytes, Entry>,
}

impl Users {
    /// The table of stored records; a record whose rules no longer apply
    /// (a command removed from the binary) is an error naming the user.
    pub fn from_records(records: Vec<(Bytes, UserRecord)>) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (name, record) in records {
            let rules = split_rules(&record.rules);
            let user = User::from_rules(name.clone(), &rules).map_err(|e| {
                format!(
                    "stored ACL user '{}' has rules this binary cannot apply: {e}",
                    String::from_utf8_lossy(&name)
                )
            })?;
            by_name.insert(
                name,
                Entry {
                    user: Arc::new(user),
                    created_index: record.created_index,
                },
            );
        }
        Ok(Self { by_name })
    }

    /// User `name`, if stored.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.by_name.get(name)
    }

    /// The stored users, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.by_name.iter()
    }

    /// Number of stored users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A stored description split back into rules.
fn split_rules(rules: &[u8]) -> Vec<Bytes> {
    rules
        .split(|b| *b == b' ')
        .filter(|r| !r.is_empty())
        .map(Bytes::copy_from_slice)
        .collect()
}

/// Checks a user name as `ACL SETUSER` and ACL files take it.
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if has_spaces(name) {
        return Err(NAME_WITH_SPACES.into());
    }
    if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
        return Err(format!(
            "ERR user names must have 1 to {MAX_USER_NAME_BYTES} bytes"
        ));
    }
    Ok(())
}

/// `ACL SETUSER`'s error for `rule`.
pub fn setuser_error(rule: &[u8], e: &RuleError) -> String {
    format!(
        "ERR Error in ACL SETUSER modifier '{}': {e}",
        String::from_utf8_lossy(rule)
    )
}

// ------------------------------------------------------------ apply

/// Applies an ACL write at log `index` (every replica alike) and returns
/// its reply. A refused write changes nothing.
pub fn apply(ctx: &mut Ctx<'_>, write: &AclWrite, index: u64) -> Result<Frame, KvError> {
    match write {
        AclWrite::SetUser { name, base, rules } => {
            if let Err(e) = check_name(name) {
                return Ok(Frame::error(e));
            }
            let existing = ctx.db.user(name)?;
            let (mut user, created_index, base) = match &existing {
                Some(r) => (
                    User::from_rules(name.clone(), &split_rules(&r.rules))
                        .map_err(|e| KvError::Corrupt(format!("stored ACL user: {e}")))?,
                    r.created_index,
                    &[][..],
                ),
                None => (User::new(name.clone()), index, &base[..]),
            };
            if existing.is_none() && ctx.db.users(MAX_USERS)?.len() >= MAX_USERS {
                return Ok(Frame::error(format!(
                    "ERR too many ACL users (at most {MAX_USERS})"
                )));
            }
            if let Err((rule, e)) = user.apply_all(base) {
                return Ok(Frame::error(setuser_error(&rule, &e)));
            }
            if let Err((rule, e)) = user.apply_all(rules) {
                return Ok(Frame::error(setuser_error(&rule, &e)));
            }
            store(ctx, &user, created_index)?;
            Ok(Frame::ok())
        }
        AclWrite::DelUser(names) => {
            if names.iter().any(|n| n.as_ref() == DEFAULT_USER) {
                return Ok(Frame::error("ERR The 'default' user cannot be removed"));
            }
            let mut deleted = 0i64;
            for name in names {
                if ctx.db.delete_user(name)? {
                    deleted += 1;
                }
            }
            Ok(Frame::Integer(deleted))
        }
        AclWrite::Replace(users) => {
            let built = match build_users(users) {
                Ok(b) => b,
                Err(e) => return Ok(Frame::error(format!("ERR {e}"))),
            };
            ctx.db.clear_users()?;
            for user in &built {
                store(ctx, user, index)?;
            }
            Ok(Frame::ok())
        }
    }
}

fn store(ctx: &mut Ctx<'_>, user: &User, created_index: u64) -> Result<(), KvError> {
    let rules = user.describe();
    if rules.len() > MAX_USER_RULES_BYTES {
        return Err(KvError::Corrupt(
            "ACL user description over its bound".into(),
        ));
    }
    ctx.db.put_user(
        user.name(),
        &UserRecord {
            created_index,
            rules: Bytes::from(rules),
        },
    )
}

/// The users an ACL file (or `ACL LOAD`) defines, checked: valid names,
/// no duplicates, rules that apply, at most [`MAX_USERS`].
pub fn build_users(defs: &[UserDef]) -> Result<Vec<User>, String> {
    if defs.len() > MAX_USERS {
        return Err(format!("too many ACL users (at most {MAX_USERS})"));
    }
    let mut out: Vec<User> = Vec::with_capacity(defs.len());
    for def in defs {
        check_name(&def.name).map_err(|e| e.trim_start_matches("ERR ").to_string())?;
        if out.iter().any(|u| u.name() == &def.name) {
            return Err(format!(
                "Duplicate user '{}' found",
                String::from_utf8_lossy(&def.name)
            ));
        }
        let mut user = User::new(def.name.clone());
        user.apply_all(&def.rules).map_err(|(rule, e)| {
            format!(
                "user '{}': Error in applying operation '{}': {e}",
                String::from_utf8_lossy(&def.name),
                String::from_utf8_lossy(&rule)
            )
        })?;
        out.push(user);
    }
    Ok(out)
}

/// Parses an ACL file (Redis's format: one `user <name> <rules…>` per
/// line, blank lines ignored): the users, or the first error naming its
/// line.
pub fn parse_acl_file(text: &str) -> Result<Vec<UserDef>, String> {
    let mut defs: Vec<UserDef> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let words: Vec<&str> = line
            .split([' ', '\t', '\r'])
            .filter(|w| !w.is_empty())
            .collect();
        let Some((first, rest)) = words.split_first() else {
            continue;
        };
        let (Some(name), true) = (rest.first(), *first == "user") else {
            return Err(format!(
                "line {line_no}: should start with user keyword followed by the username"
            ));
        };
        if defs.iter().any(|d| d.name.as_ref() == name.as_bytes()) {
            return Err(format!("line {line_no}: Duplicate user '{name}' found"));
        }
        let def = UserDef {
            name: Bytes::copy_from_slice(name.as_bytes()),
            rules: rest
                .iter()
                .skip(1)
                .map(|r| Bytes::copy_from_slice(r.as_bytes()))
                .collect(),
        };
        build_users(std::slice::from_ref(&def)).map_err(|e| format!("line {line_no}: {e}"))?;
        defs.push(def);
    }
    if defs.len() > MAX_USERS {
        return Err(format!("too many users (at most {MAX_USERS})"));
    }
    Ok(defs)
}

/// An ACL file holding `users` (`ACL SAVE`), one line each, by name.
pub fn render_acl_file<'a>(users: impl Iterator<Item = &'a User>) -> String {
    let mut out = String::new();
    for u in users {
        let _ = writeln!(
            out,
            "user {} {}",
            String::from_utf8_lossy(u.name()),
            u.describe()
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rules(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn user(words: &str) -> User {
        User::from_rules(Bytes::from_static(b"u"), &rules(words)).unwrap()
    }

    fn argv(words: &str) -> Vec<Bytes> {
        rules(words)
    }

    fn decl(name: &str) -> &'static Decl {
        table::lookup_fullname(name.as_bytes()).unwrap()
    }

    #[test]
    fn new_users_are_off_with_nothing_allowed() {
        let u = User::new(Bytes::from_static(b"u"));
        assert_eq!(u.describe(), "off resetchannels -@all");
        assert!(!u.check_password(b""));
        assert_eq!(u.check(decl("get"), &argv("get k")), Err(Denied::Command));
    }

    #[test]
    fn the_default_user_describes_as_redis_shows_it() {
        assert_eq!(User::default_user(None).describe(), "on nopass ~* &* +@all");
    }

    #[test]
    fn passwords_are_added_removed_and_checked() {
        let mut u = user("on >p1 >p2");
        assert!(u.check_password(b"p1") && u.check_password(b"p2"));
        assert!(!u.check_password(b"p3"));
        u.apply_all(&rules("<p1")).unwrap();
        assert!(!u.check_password(b"p1"));
        assert_eq!(
            u.apply_all(&rules("<p1")).unwrap_err().1,
            RuleError::NoSuchPassword
        );
        let hash = sha256_hex(b"p4");
        u.apply_all(&rules(&format!("#{hash}"))).unwrap();
        assert!(u.check_password(b"p4"));
        assert_eq!(
            u.apply_all(&rules("#abc")).unwrap_err().1,
            RuleError::BadHash
        );
        u.apply_all(&rules("off")).unwrap();
        assert!(!u.check_password(b"p4"), "a disabled user cannot log in");
        u.apply_all(&rules("on nopass")).unwrap();
        assert!(u.check_password(b"anything"));
        u.apply_all(&rules("resetpass")).unwrap();
        assert!(!u.check_password(b"anything"));
    }

    #[test]
    fn a_failing_rule_changes_nothing() {
        let mut u = user("on +get");
        let before = u.clone();
        assert_eq!(
            u.apply_all(&rules("+set +nosuch")).unwrap_err(),
            (Bytes::from_static(b"+nosuch"), RuleError::UnknownName)
        );
        assert_eq!(u, before);
    }

    #[test]
    fn key_patterns_follow_read_and_write() {
        let u = user("on +@all %R~r* %W~w* ~rw*");
        assert_eq!(u.check(decl("get"), &argv("get r1")), Ok(()));
        assert_eq!(u.check(decl("get"), &argv("get w1")), Err(Denied::Key(1)));
        assert_eq!(u.check(decl("lpush"), &argv("lpush w1 x")), Ok(()));
        assert_eq!(
            u.check(decl("lpush"), &argv("lpush r1 x")),
            Err(Denied::Key(1))
        );
        assert_eq!(u.check(decl("mset"), &argv("mset rw1 a w2 b")), Ok(()));
        assert_eq!(
            u.check(decl("mset"), &argv("mset rw1 a r2 b")),
            Err(Denied::Key(3))
        );
        assert_eq!(u.keys_text(), "%R~r* %W~w* ~rw*");
        let both = user("%R~foo %W~foo %RW~bar");
        assert_eq!(both.keys_text(), "~foo ~bar");
    }

    #[test]
    fn patterns_after_all_are_refused() {
        let mut u = user("allkeys allchannels");
        assert_eq!(
            u.apply_all(&rules("~x")).unwrap_err().1,
            RuleError::PatternAfterAllKeys
        );
        assert_eq!(
            u.apply_all(&rules("&x")).unwrap_err().1,
            RuleError::PatternAfterAllChannels
        );
        assert_eq!(
            u.apply_all(&rules("%X~x")).unwrap_err().1,
            RuleError::PatternAfterAllKeys
        );
        let mut v = user("");
        assert_eq!(
            v.apply_all(&rules("%X~x")).unwrap_err().1,
            RuleError::Syntax
        );
        assert_eq!(
            v.apply_all(&rules("bogus")).unwrap_err().1,
            RuleError::Syntax
        );
        assert_eq!(
            v.apply_all(&rules("(+get)")).unwrap_err().1,
            RuleError::Selectors
        );
    }

    #[test]
    fn subcommands_and_first_args() {
        let u = user("on -@all +client|id +select|0");
        assert_eq!(u.check(decl("client|id"), &argv("client id")), Ok(()));
        assert_eq!(
            u.check(decl("client|setname"), &argv("client setname x")),
            Err(Denied::Command)
        );
        assert_eq!(u.check(decl("select"), &argv("select 0")), Ok(()));
        assert_eq!(
            u.check(decl("select"), &argv("select 1")),
            Err(Denied::Command)
        );
        assert_eq!(u.command_rules(), "-@all +select|0 +client|id");
        let mut v = user("+@all");
        assert_eq!(
            v.apply_all(&rules("+config|get|x")).unwrap_err().1,
            RuleError::FirstArgOfSubcommand
        );
        assert_eq!(
            v.apply_all(&rules("+config|nosuch")).unwrap_err().1,
            RuleError::UnknownName
        );
        assert_eq!(
            v.apply_all(&rules("+get|a|b")).unwrap_err().1,
            RuleError::UnknownName
        );
        assert_eq!(
            v.apply_all(&rules("-select|0")).unwrap_err().1,
            RuleError::UnknownName
        );
        v.apply_all(&rules("-config|set")).unwrap();
        assert_eq!(v.command_rules(), "+@all -config|set");
        let w = user("+@all -client +client|id");
        assert_eq!(w.command_rules(), "+@all -client +client|id");
    }

    #[test]
    fn auth_commands_are_always_allowed() {
        let u = user("on -@all");
        assert_eq!(u.check(decl("auth"), &argv("auth a b")), Ok(()));
        assert_eq!(u.check(decl("hello"), &argv("hello 3")), Ok(()));
    }

    /// Redis's "ACL GETUSER provides reasonable results": every category
    /// `ACL CAT` lists describes back as itself, added or removed.
    #[test]
    fn every_listed_category_describes_back_as_itself() {
        for cat in categories_in_use() {
            let minus = user(&format!("+@all -@{cat}"));
            assert_eq!(minus.command_rules(), format!("+@all -@{cat}"));
            let plus = user(&format!("-@all +@{cat}"));
            assert_eq!(plus.command_rules(), format!("-@all +@{cat}"));
        }
    }

    #[test]
    fn descriptions_round_trip() {
        for words in [
            "on >a ~k* %R~r* &ch +@read -get +set",
            "off nopass allkeys allchannels +@all -@dangerous +keys",
            "reset on #0000000000000000000000000000000000000000000000000000000000000000 +select|0 +select|1",
            "on +@string -@write +incr +client|id",
        ] {
            let u = user(words);
            let again = user(&u.describe());
            assert_eq!(again.describe(), u.describe(), "{words}");
            assert_eq!(again.commands, u.commands, "{words}");
        }
    }

    #[test]
    fn acl_files_are_checked_line_by_line() {
        let ok = parse_acl_file("user alice on >a ~* +@all\n\nuser bob off\n").unwrap();
        assert_eq!(ok.len(), 2);
        let err = parse_acl_file("user alice on\nuser bob +nosuch\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let dup = parse_acl_file("user a on\nuser a off\n").unwrap_err();
        assert!(dup.contains("Duplicate user 'a'"), "{dup}");
        assert!(parse_acl_file("nope a\n")
            .unwrap_err()
            .starts_with("line 1:"));
        let users = build_users(&ok).unwrap();
        let text = render_acl_file(users.iter());
        assert_eq!(parse_acl_file(&text).unwrap().len(), 2);
    }

    #[test]
    fn limits_are_enforced() {
        let many: String = (0..=MAX_PASSWORDS_PER_USER)
            .map(|i| format!(">p{i} "))
            .collect();
        let mut u = user("");
        assert!(matches!(
            u.apply_all(&rules(&many)).unwrap_err().1,
            RuleError::Limit(_)
        ));
        let long = format!("~{}", "x".repeat(MAX_PATTERN_BYTES + 1));
        assert!(matches!(
            u.apply_all(&rules(&long)).unwrap_err().1,
            RuleError::Limit(_)
        ));
        assert!(check_name(&[b'a'; MAX_USER_NAME_BYTES + 1]).is_err());
        assert_eq!(check_name(b"a b").unwrap_err(), NAME_WITH_SPACES);
    }
}
