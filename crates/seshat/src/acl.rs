//! `ACL …` commands. Writes (`SETUSER`, `DELUSER`, `LOAD`) are checked
//! here, then proposed through the log ([`prepare_write`]) and applied on
//! every replica (`seshat_commands::acl::apply`); reads answer from this
//! node's copy of the users ([`execute`]). `--aclfile`'s users are
//! proposed by the node when it first knows a leader after start, if it
//! is that leader ([`propose_aclfile`]).

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use seshat_commands::acl::{self, User, Users, DEFAULT_USER, MAX_USERS};
use seshat_commands::{self as cmds, ServerCmd};
use seshat_kv::{AclWrite, UserDef, Write};
use seshat_protocol_resp::Frame;

use crate::node::Node;
use crate::session::ClientState;
use crate::shared::Shared;

/// Redis's reply to `ACL LOAD`/`SAVE` without an ACL file.
const NO_ACLFILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";
/// Largest `ACL GENPASS` in bits.
const GENPASS_MAX_BITS: i64 = 4096;

/// The user `name` in force on this node: stored, or `default` from
/// `requirepass`.
fn lookup(shared: &Shared, users: &Users, name: &[u8]) -> Option<Arc<User>> {
    if name == DEFAULT_USER {
        return Some(shared.auth.default_user(users));
    }
    users.get(name).map(|e| e.user.clone())
}

/// Every user in force, by name (`default` included).
fn all_users(shared: &Shared, users: &Users) -> Vec<Arc<User>> {
    let mut out: Vec<Arc<User>> = users.iter().map(|(_, e)| e.user.clone()).collect();
    if users.get(DEFAULT_USER).is_none() {
        out.push(shared.auth.default_user(users));
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// Checks an ACL write and builds what the log carries; an error reply
/// costs no entry.
pub fn prepare_write(cmd: ServerCmd, args: &[Bytes], shared: &Shared) -> Result<Write, Frame> {
    let users = shared.auth.users();
    match cmd {
        ServerCmd::AclSetUser => {
            let name = args.get(2).cloned().unwrap_or_default();
            acl::check_name(&name).map_err(Frame::error)?;
            let rules = args.get(3..).unwrap_or_default().to_vec();
            // Bounded before the rules are tried: a write larger than one
            // log entry may be is refused anyway.
            Write::Acl(AclWrite::SetUser {
                name: name.clone(),
                base: Vec::new(),
                rules: rules.clone(),
            })
            .check_size(&shared.settings.limits)
            .map_err(|e| Frame::error(e.to_string()))?;
            let stored = users.get(&name).map(|e| (*e.user).clone());
            // Until an ACL write replicated `default`, it is this node's
            // requirepass: the first change starts from it everywhere.
            let base = if stored.is_none() && name.as_ref() == DEFAULT_USER {
                split(&shared.auth.default_user(&users).describe())
            } else {
                Vec::new()
            };
            if stored.is_none() && users.len() >= MAX_USERS {
                return Err(Frame::error(format!(
                    "ERR too many ACL users (at most {MAX_USERS})"
                )));
            }
            let mut staged = match stored {
                Some(u) => u,
                None => User::new(name.clone()),
            };
            for step in [&base, &rules] {
                staged
                    .apply_all(step)
                    .map_err(|(rule, e)| Frame::error(acl::setuser_error(&rule, &e)))?;
            }
            Ok(Write::Acl(AclWrite::SetUser { name, base, rules }))
        }
        ServerCmd::AclDelUser => {
            let names = args.get(2..).unwrap_or_default().to_vec();
            if names.iter().any(|n| n.as_ref() == DEFAULT_USER) {
                return Err(Frame::error("ERR The 'default' user cannot be removed"));
            }
            Ok(Write::Acl(AclWrite::DelUser(names)))
        }
        _ => {
            let Some(file) = &shared.settings.aclfile else {
                return Err(Frame::error(NO_ACLFILE));
            };
            let defs = crate::config::AclFile::read(file.path.clone())
                .map_err(|e| {
                    Frame::error(format!(
                        "ERR {e}. WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
                    ))
                })?
                .users;
            Ok(Write::Acl(AclWrite::Replace(defs)))
        }
    }
}

fn split(rules: &str) -> Vec<Bytes> {
    rules
        .split(' ')
        .filter(|r| !r.is_empty())
        .map(|r| Bytes::copy_from_slice(r.as_bytes()))
        .collect()
}

/// Runs an `ACL` command that reads (or, `SAVE`, writes the file).
pub fn execute(cmd: ServerCmd, args: &[Bytes], client: &ClientState, shared: &Shared) -> Frame {
    let users = shared.auth.users();
    let bulk = |s: String| Frame::Bulk(Bytes::from(s));
    match cmd {
        ServerCmd::AclWhoAmI => Frame::Bulk(client.identity.name.clone()),
        ServerCmd::AclUsers => Frame::Array(
            all_users(shared, &users)
                .iter()
                .map(|u| Frame::Bulk(u.name().clone()))
                .collect(),
        ),
        ServerCmd::AclList => Frame::Array(
            all_users(shared, &users)
                .iter()
                .map(|u| {
                    bulk(format!(
                        "user {} {}",
                        String::from_utf8_lossy(u.name()),
                        u.describe()
                    ))
                })
                .collect(),
        ),
        ServerCmd::AclGetUser => match args.get(2).and_then(|n| lookup(shared, &users, n)) {
            Some(u) => u.getuser_frame(),
            None => Frame::Null,
        },
        ServerCmd::AclCat => cat(args),
        ServerCmd::AclDryRun => dryrun(args, shared, &users),
        ServerCmd::AclGenPass => genpass(args),
        ServerCmd::AclLog => log(args),
        ServerCmd::AclSave => save(shared, &users),
        ServerCmd::AclHelp => help(),
        _ => Frame::error("ERR internal error: ACL writes are run by the connection"),
    }
}

fn subcommand_syntax(args: &[Bytes]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
        cmds::echo(args.get(1).map_or(&b""[..], |a| a))
    ))
}

fn cat(args: &[Bytes]) -> Frame {
    match args {
        [_, _] => Frame::Array(
            acl::categories_in_use()
                .into_iter()
                .map(Frame::bulk)
                .collect(),
        ),
        [_, _, category] => match acl::commands_in_category(category) {
            Some(names) => Frame::Array(names.into_iter().map(Frame::bulk).collect()),
            None => Frame::error(format!("ERR Unknown category '{}'", cmds::echo(category))),
        },
        _ => subcommand_syntax(args),
    }
}

fn dryrun(args: &[Bytes], shared: &Shared, users: &Users) -> Frame {
    let name = args.get(2).cloned().unwrap_or_default();
    let Some(user) = lookup(shared, users, &name) else {
        return Frame::error(format!("ERR User '{}' not found", cmds::echo(&name)));
    };
    let argv = args.get(3..).unwrap_or_default();
    let not_found = || {
        Frame::error(format!(
            "ERR Command '{}' not found",
            cmds::echo(argv.first().map_or(&b""[..], |a| a))
        ))
    };
    let Some(parent) = argv.first().and_then(|n| cmds::lookup(n)) else {
        return not_found();
    };
    let decl = match argv.get(1) {
        Some(sub) if !parent.subcommands.is_empty() => {
            let mut full = parent.name.as_bytes().to_vec();
            full.push(b'|');
            full.extend_from_slice(sub);
            match cmds::lookup_fullname(&full) {
                Some(d) => d,
                None => return not_found(),
            }
        }
        _ => parent,
    };
    if !decl.arity_ok(argv.len()) {
        return Frame::error(format!(
            "ERR wrong number of arguments for '{}' command",
            decl.name
        ));
    }
    match user.check(decl, argv) {
        Ok(()) => Frame::ok(),
        Err(denied) => Frame::Bulk(Bytes::from(denied.dryrun(decl, argv))),
    }
}

fn genpass(args: &[Bytes]) -> Frame {
    let bits = match args.get(2) {
        None => 256,
        Some(a) => match seshat_protocol_resp::parse_i64(a) {
            Some(b) => b,
            None => return Frame::error("ERR value is not an integer or out of range"),
        },
    };
    if args.len() > 3 {
        return subcommand_syntax(args);
    }
    if bits <= 0 || bits > GENPASS_MAX_BITS {
        return Frame::error(format!(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to {GENPASS_MAX_BITS}"
        ));
    }
    let chars = usize::try_from((bits + 3) / 4).unwrap_or(64);
    let mut random = vec![0u8; chars.div_ceil(2)];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    if let Err(e) = read {
        return Frame::error(format!("ERR cannot read /dev/urandom: {e}"));
    }
    let mut hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(chars);
    Frame::Bulk(Bytes::from(hex))
}

/// `ACL LOG`: Seshat keeps no log of refusals yet (they are counted in
/// `INFO stats` and `/metrics`): an empty list, and `RESET` succeeds.
fn log(args: &[Bytes]) -> Frame {
    match args.get(2) {
        None => Frame::Array(Vec::new()),
        Some(a) if a.eq_ignore_ascii_case(b"reset") => Frame::ok(),
        Some(a) => match seshat_protocol_resp::parse_i64(a) {
            Some(_) if args.len() == 3 => Frame::Array(Vec::new()),
            Some(_) => subcommand_syntax(args),
            None => Frame::error("ERR value is not an integer or out of range"),
        },
    }
}

fn save(shared: &Shared, users: &Users) -> Frame {
    let Some(file) = &shared.settings.aclfile else {
        return Frame::error(NO_ACLFILE);
    };
    let all = all_users(shared, users);
    let text = acl::render_acl_file(all.iter().map(|u| u.as_ref()));
    let tmp = file.path.with_extension("acl.tmp");
    let written = std::fs::write(&tmp, text.as_bytes())
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &file.path));
    match written {
        Ok(()) => Frame::ok(),
        Err(e) => {
            tracing::error!(path = %file.path.display(), error = %e, "ACL SAVE failed");
            Frame::error("ERR There was an error trying to save the ACLs. Please check the server logs for more information")
        }
    }
}

fn help() -> Frame {
    const LINES: &[&str] = &[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Print this help.",
    ];
    Frame::Array(LINES.iter().map(|l| Frame::simple(*l)).collect())
}

/// `--aclfile`: once a leader is known after start, proposes the file's
/// users as the cluster's if this node is that leader (and leaves the
/// replicated users alone otherwise). Retries while the proposal fails
/// for want of a leader, for at most `ACLFILE_PROPOSE_WAIT`.
pub async fn propose_aclfile(node: Arc<Node>, users: Vec<UserDef>, path: String) {
    const ACLFILE_PROPOSE_WAIT: Duration = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + ACLFILE_PROPOSE_WAIT;
    let write = Write::Acl(AclWrite::Replace(users));
    while tokio::time::Instant::now() < deadline {
        let m = node.metrics();
        match m.current_leader {
            Some(leader) if leader != m.id => {
                tracing::info!(aclfile = %path, leader, "not the leader: the cluster's replicated ACL users stand (ACL LOAD on the leader loads its file)");
                return;
            }
            Some(_) => match node.write(write.clone(), 0).await {
                Ok(Frame::Error(e)) => {
                    tracing::error!(aclfile = %path, error = %String::from_utf8_lossy(&e), "ACL file refused");
                    return;
                }
                Ok(_) => {
                    tracing::info!(aclfile = %path, "ACL file's users proposed and applied");
                    return;
                }
                Err(e) => {
                    tracing::warn!(aclfile = %path, error = %e, "ACL file not applied yet; retrying")
                }
            },
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(aclfile = %path, "no leader known in time: the ACL file was not applied");
}
