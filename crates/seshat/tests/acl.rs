//! ACL users (`ACL SETUSER` and friends, `AUTH user pass`, `-NOPERM`)
//! against real `seshat` processes: raw RESP where Redis's exact replies
//! matter, a restart, `--aclfile`, and a 3-node cluster where users
//! created through the leader are enforced by every node, including one
//! that catches up by snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{error, Cluster, Raw, Server};
use seshat_protocol_resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn ok() -> Frame {
    Frame::ok()
}

/// The text of a bulk, simple or error reply.
fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) | Frame::Error(b) => String::from_utf8_lossy(b).into(),
        other => panic!("not a string reply: {other:?}"),
    }
}

/// The strings of an array reply.
fn strings(f: &Frame) -> Vec<String> {
    match f {
        Frame::Array(items) => items.iter().map(text).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// A RESP2 `ACL GETUSER` reply as (field, value) pairs.
fn fields(f: &Frame) -> Vec<(String, Frame)> {
    match f {
        Frame::Array(items) => items
            .chunks(2)
            .map(|p| (text(&p[0]), p[1].clone()))
            .collect(),
        other => panic!("not a GETUSER reply: {other:?}"),
    }
}

fn field(f: &Frame, name: &str) -> Frame {
    fields(f)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {f:?}"))
        .1
}

const NOPERM_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";

fn noperm_cmd(name: &str) -> Frame {
    error(&format!(
        "NOPERM this user has no permissions to run the '{name}' command"
    ))
}

#[test]
fn setuser_grammar_and_getuser_list_output_match_redis() {
    let server = Server::start();
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["ACL", "WHOAMI"]), bulk("default"));
    assert_eq!(c.call(&["ACL", "SETUSER", "newuser"]), ok());
    assert_eq!(
        c.call(&["ACL", "LIST"]),
        Frame::Array(vec![
            bulk("user default on nopass ~* &* +@all"),
            bulk("user newuser off resetchannels -@all"),
        ])
    );
    assert_eq!(
        c.call(&[
            "ACL",
            "SETUSER",
            "newuser",
            "on",
            ">passwd1",
            "~foo:*",
            "%R~r*",
            "%W~w*",
            "&ch",
            "+@string",
            "-incr",
            "+client|id",
            "+select|0",
        ]),
        ok()
    );
    let user = c.call(&["ACL", "GETUSER", "newuser"]);
    assert_eq!(
        field(&user, "flags"),
        Frame::Array(vec![bulk("on")]),
        "{user:?}"
    );
    // sha256("passwd1")
    let hash = "3b1d7e9a7c37141350fb473fa099b8b18030cde1909f363e3758e52d4ea1a7b4";
    assert_eq!(field(&user, "passwords"), Frame::Array(vec![bulk(hash)]));
    assert_eq!(
        text(&field(&user, "commands")),
        "-@all +@string -incr +select|0 +client|id"
    );
    assert_eq!(text(&field(&user, "keys")), "~foo:* %R~r* %W~w*");
    assert_eq!(text(&field(&user, "channels")), "&ch");
    assert_eq!(field(&user, "selectors"), Frame::Array(vec![]));
    assert_eq!(
        strings(&c.call(&["ACL", "LIST"]))[1],
        format!("user newuser on #{hash} ~foo:* %R~r* %W~w* resetchannels &ch -@all +@string -incr +select|0 +client|id")
    );
    // Rules that remove: passwords, keys, commands; `reset`.
    assert_eq!(
        c.call(&[
            "ACL",
            "SETUSER",
            "newuser",
            "<passwd1",
            "resetkeys",
            "allkeys",
            "+@all",
            "-@dangerous"
        ]),
        ok()
    );
    let user = c.call(&["ACL", "GETUSER", "newuser"]);
    assert_eq!(field(&user, "passwords"), Frame::Array(vec![]));
    assert_eq!(text(&field(&user, "keys")), "~*");
    assert_eq!(text(&field(&user, "commands")), "+@all -@dangerous");
    assert_eq!(c.call(&["ACL", "SETUSER", "newuser", "reset"]), ok());
    assert_eq!(
        strings(&c.call(&["ACL", "LIST"]))[1],
        "user newuser off sanitize-payload resetchannels -@all"
    );
    assert_eq!(c.call(&["ACL", "GETUSER", "nosuchuser"]), Frame::Null);
    assert_eq!(
        c.call(&["ACL", "USERS"]),
        Frame::Array(vec![bulk("default"), bulk("newuser")])
    );
    // Errors, in Redis's words; a refused SETUSER changes nothing.
    for (args, reply) in [
        (
            vec!["ACL", "SETUSER", "a a"],
            "ERR Usernames can't contain spaces or null characters",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "on", "+nosuch"],
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "-@nosuch"],
            "ERR Error in ACL SETUSER modifier '-@nosuch': Unknown command or category name in ACL",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "#abc"],
            "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "<nopasswd"],
            "ERR Error in ACL SETUSER modifier '<nopasswd': The password you are trying to remove from the user does not exist",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "allkeys", "~foo"],
            "ERR Error in ACL SETUSER modifier '~foo': Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "+config|get|x"],
            "ERR Error in ACL SETUSER modifier '+config|get|x': Allowing first-arg of a subcommand is not supported",
        ),
        (
            vec!["ACL", "SETUSER", "newuser", "bogus"],
            "ERR Error in ACL SETUSER modifier 'bogus': Syntax error",
        ),
        (
            vec!["ACL", "DELUSER", "newuser", "default"],
            "ERR The 'default' user cannot be removed",
        ),
        (vec!["ACL", "CAT", "nosuch"], "ERR Unknown category 'nosuch'"),
        (
            vec!["ACL", "CAT", "a", "b"],
            "ERR unknown subcommand or wrong number of arguments for 'CAT'. Try ACL HELP.",
        ),
        (
            vec!["ACL", "HELP", "xxx"],
            "ERR wrong number of arguments for 'acl|help' command",
        ),
        (
            vec!["ACL", "GENPASS", "5000"],
            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
        ),
    ] {
        assert_eq!(c.call(&args), error(reply), "{args:?}");
    }
    assert_eq!(
        strings(&c.call(&["ACL", "LIST"]))[1],
        "user newuser off sanitize-payload resetchannels -@all",
        "refused rules changed nothing"
    );
    // Categories come from the declarations.
    let cats = strings(&c.call(&["ACL", "CAT"]));
    for cat in [
        "keyspace",
        "read",
        "write",
        "string",
        "connection",
        "dangerous",
    ] {
        assert!(cats.contains(&cat.to_string()), "{cats:?}");
    }
    let string = strings(&c.call(&["ACL", "CAT", "string"]));
    assert!(string.contains(&"get".to_string()) && !string.contains(&"sadd".to_string()));
    let dangerous = strings(&c.call(&["ACL", "CAT", "dangerous"]));
    assert!(dangerous.contains(&"flushall".to_string()) && dangerous.contains(&"keys".to_string()));
    assert_eq!(text(&c.call(&["ACL", "GENPASS"])).len(), 64);
    assert_eq!(text(&c.call(&["ACL", "GENPASS", "5"])).len(), 2);
    assert_eq!(
        c.call(&["ACL", "DELUSER", "newuser", "nosuch"]),
        Frame::Integer(1)
    );
    assert_eq!(
        c.call(&["ACL", "USERS"]),
        Frame::Array(vec![bulk("default")])
    );
}

#[test]
fn users_log_in_and_are_refused_what_their_rules_do_not_allow() {
    let server = Server::start();
    let mut admin = Raw::connect(server.port);
    assert_eq!(
        admin.call(&[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">pw",
            "%R~r*",
            "%W~w*",
            "~rw*",
            "+@all",
            "-flushall"
        ]),
        ok()
    );
    assert_eq!(admin.call(&["SET", "r1", "v"]), ok());
    let mut c = Raw::connect(server.port);
    // New users start disabled.
    assert_eq!(admin.call(&["ACL", "SETUSER", "bob", ">pw"]), ok());
    assert_eq!(
        c.call(&["AUTH", "bob", "pw"]),
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        c.call(&["AUTH", "alice", "wrong"]),
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(c.call(&["AUTH", "alice", "pw"]), ok());
    assert_eq!(c.call(&["ACL", "WHOAMI"]), bulk("alice"));
    // Read patterns allow reads only, write patterns writes only.
    assert_eq!(c.call(&["GET", "r1"]), bulk("v"));
    assert_eq!(c.call(&["SET", "r1", "x"]), error(NOPERM_KEY));
    assert_eq!(c.call(&["LPUSH", "w1", "x"]), Frame::Integer(1));
    assert_eq!(c.call(&["LRANGE", "w1", "0", "-1"]), error(NOPERM_KEY));
    assert_eq!(c.call(&["SET", "rw1", "x"]), ok());
    assert_eq!(c.call(&["GET", "rw1"]), bulk("x"));
    assert_eq!(c.call(&["GET", "other"]), error(NOPERM_KEY));
    assert_eq!(
        c.call(&["MSET", "rw2", "a", "other", "b"]),
        error(NOPERM_KEY)
    );
    assert_eq!(c.call(&["FLUSHALL"]), noperm_cmd("flushall"));
    assert!(matches!(
        c.call(&["CLIENT", "INFO"]),
        Frame::Bulk(b) if String::from_utf8_lossy(&b).contains(" user=alice ")
    ));
    // Nothing refused was written.
    assert_eq!(admin.call(&["EXISTS", "other", "rw2"]), Frame::Integer(0));
    let info = text(&admin.call(&["INFO", "stats"]));
    assert!(info.contains("acl_access_denied_cmd:1\r\n"), "{info}");
    assert!(info.contains("acl_access_denied_key:4\r\n"), "{info}");
    assert!(info.contains("acl_access_denied_auth:2\r\n"), "{info}");
    // Changes apply to logged-in clients at their next command.
    assert_eq!(admin.call(&["ACL", "SETUSER", "alice", "-get"]), ok());
    assert_eq!(c.call(&["GET", "r1"]), noperm_cmd("get"));
    // Subcommands and first arguments.
    assert_eq!(
        admin.call(&[
            "ACL",
            "SETUSER",
            "alice",
            "-client",
            "+client|id",
            "-select",
            "+select|0"
        ]),
        ok()
    );
    assert!(matches!(c.call(&["CLIENT", "ID"]), Frame::Integer(_)));
    assert_eq!(
        c.call(&["CLIENT", "SETNAME", "x"]),
        noperm_cmd("client|setname")
    );
    assert_eq!(c.call(&["SELECT", "0"]), ok());
    assert_eq!(c.call(&["SELECT", "1"]), noperm_cmd("select"));
    // HELLO AUTH logs in as a user; a disabled user cannot, but its
    // connections stay (Redis).
    let mut h = Raw::connect(server.port);
    assert!(matches!(
        h.call(&["HELLO", "3", "AUTH", "alice", "pw"]),
        Frame::Map(_)
    ));
    assert_eq!(h.call(&["ACL", "WHOAMI"]), bulk("alice"));
    assert_eq!(admin.call(&["ACL", "SETUSER", "alice", "off"]), ok());
    assert_eq!(h.call(&["ACL", "WHOAMI"]), bulk("alice"));
    assert_eq!(
        Raw::connect(server.port).call(&["AUTH", "alice", "pw"]),
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    let metrics = http_get(server.http_port, "/metrics");
    assert!(metrics.contains("acl_denied_commands_total"), "{metrics}");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn dryrun_answers_as_redis_does() {
    let server = Server::start();
    let mut c = Raw::connect(server.port);
    assert_eq!(
        c.call(&[
            "ACL",
            "SETUSER",
            "t",
            "+@all",
            "%R~read*",
            "%W~write*",
            "%RW~rw*"
        ]),
        ok()
    );
    assert_eq!(c.call(&["ACL", "DRYRUN", "t", "GET", "read"]), ok());
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "t", "GET", "write"]),
        bulk("This user has no permissions to access the 'write' key")
    );
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "nouser", "GET", "read"]),
        error("ERR User 'nouser' not found")
    );
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "t", "nocommand", "read"]),
        error("ERR Command 'nocommand' not found")
    );
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "t", "GET"]),
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(c.call(&["ACL", "SETUSER", "t", "-@all"]), ok());
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "t", "SET", "k", "v"]),
        bulk("This user has no permissions to run the 'set' command")
    );
    assert_eq!(
        c.call(&["ACL", "DRYRUN", "default", "CONFIG", "SET", "a", "b"]),
        ok()
    );
}

#[test]
fn transactions_are_checked_when_queued_and_again_at_exec() {
    let server = Server::start();
    let mut admin = Raw::connect(server.port);
    assert_eq!(
        admin.call(&[
            "ACL", "SETUSER", "u", "on", "nopass", "~*", "+multi", "+exec", "+incr", "+set"
        ]),
        ok()
    );
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["AUTH", "u", "x"]), ok());
    // Refused while queueing: EXEC aborts.
    assert_eq!(c.call(&["MULTI"]), ok());
    assert_eq!(c.call(&["GET", "k"]), noperm_cmd("get"));
    assert_eq!(
        c.call(&["EXEC"]),
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    // Revoked after queueing: that command's place holds the refusal,
    // the others run.
    assert_eq!(c.call(&["MULTI"]), ok());
    assert_eq!(c.call(&["SET", "k", "1"]), Frame::simple("QUEUED"));
    assert_eq!(c.call(&["INCR", "k"]), Frame::simple("QUEUED"));
    assert_eq!(c.call(&["SET", "j", "2"]), Frame::simple("QUEUED"));
    assert_eq!(admin.call(&["ACL", "SETUSER", "u", "-incr"]), ok());
    assert_eq!(
        c.call(&["EXEC"]),
        Frame::Array(vec![
            ok(),
            error("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: no permission to execute the command or subcommand"),
            ok(),
        ])
    );
    assert_eq!(admin.call(&["GET", "k"]), bulk("1"), "INCR did not run");
    assert_eq!(admin.call(&["GET", "j"]), bulk("2"));
}

#[test]
fn deleting_a_user_closes_its_connections() {
    let server = Server::start();
    let mut admin = Raw::connect(server.port);
    assert_eq!(
        admin.call(&["ACL", "SETUSER", "gone", "on", ">pw", "+@all", "~*"]),
        ok()
    );
    let mut idle = Raw::connect(server.port);
    assert_eq!(idle.call(&["AUTH", "gone", "pw"]), ok());
    let mut itself = Raw::connect(server.port);
    assert_eq!(itself.call(&["AUTH", "gone", "pw"]), ok());
    // The client deleting its own user gets the reply, then is closed.
    assert_eq!(itself.call(&["ACL", "DELUSER", "gone"]), Frame::Integer(1));
    assert_eq!(itself.try_reply_after(&["PING"]), None);
    // An idle client is closed without sending anything.
    assert_eq!(idle.try_reply(), None);
    // Others are untouched; a user created again under the same name is
    // a new user.
    assert_eq!(admin.call(&["PING"]), Frame::simple("PONG"));
    assert_eq!(
        admin.call(&["ACL", "SETUSER", "gone", "on", ">pw", "+@all", "~*"]),
        ok()
    );
    let mut again = Raw::connect(server.port);
    assert_eq!(again.call(&["AUTH", "gone", "pw"]), ok());
    assert_eq!(again.call(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn users_survive_flushall_and_a_restart_and_are_not_keys() {
    let mut server = Server::start();
    let mut c = Raw::connect(server.port);
    assert_eq!(
        c.call(&["ACL", "SETUSER", "keep", "on", ">pw", "+get", "~k*"]),
        ok()
    );
    assert_eq!(c.call(&["SET", "k1", "v"]), ok());
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(1));
    assert_eq!(c.call(&["KEYS", "*"]), Frame::Array(vec![bulk("k1")]));
    assert_eq!(c.call(&["FLUSHALL"]), ok());
    assert_eq!(c.call(&["DBSIZE"]), Frame::Integer(0));
    assert_eq!(c.call(&["KEYS", "*"]), Frame::Array(vec![]));
    assert_eq!(
        c.call(&["SCAN", "0"]),
        Frame::Array(vec![bulk("0"), Frame::Array(vec![])])
    );
    assert_eq!(c.call(&["RANDOMKEY"]), Frame::Null);
    assert_eq!(
        c.call(&["ACL", "USERS"]),
        Frame::Array(vec![bulk("default"), bulk("keep")])
    );
    let before = strings(&c.call(&["ACL", "LIST"]));
    server.terminate();
    server.restart();
    let mut c = Raw::connect(server.port);
    assert_eq!(strings(&c.call(&["ACL", "LIST"])), before);
    assert_eq!(c.call(&["AUTH", "keep", "pw"]), ok());
    assert_eq!(c.call(&["GET", "k1"]), Frame::Null);
    assert_eq!(c.call(&["SET", "k1", "v"]), noperm_cmd("set"));
}

#[test]
fn requirepass_defines_default_until_an_acl_write_replicates_it() {
    let server = Server::start_with(&["--requirepass", "pw1"]);
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["PING"]), error("NOAUTH Authentication required."));
    assert_eq!(c.call(&["AUTH", "pw1"]), ok());
    // Still per node: CONFIG SET requirepass works.
    assert_eq!(c.call(&["CONFIG", "SET", "requirepass", "pw2"]), ok());
    assert_eq!(Raw::connect(server.port).call(&["AUTH", "pw2"]), ok());
    // The first ACL write to `default` starts from the password in force.
    assert_eq!(c.call(&["ACL", "SETUSER", "default", "-flushall"]), ok());
    let list = strings(&c.call(&["ACL", "LIST"]));
    assert!(list[0].starts_with("user default on #"), "{list:?}");
    assert!(list[0].ends_with("~* &* +@all -flushall"), "{list:?}");
    assert_eq!(Raw::connect(server.port).call(&["AUTH", "pw2"]), ok());
    // From now on the replicated user rules; requirepass is refused.
    assert_eq!(
        c.call(&["CONFIG", "SET", "requirepass", "pw3"]),
        error("ERR CONFIG SET failed (possibly related to argument 'requirepass') - the default user is replicated (an ACL write changed it); set its password on every node at once with ACL SETUSER default resetpass >password")
    );
    assert_eq!(c.call(&["FLUSHALL"]), noperm_cmd("flushall"));
    assert_eq!(
        c.call(&["ACL", "SETUSER", "default", "nopass", "+flushall"]),
        ok()
    );
    let mut fresh = Raw::connect(server.port);
    assert_eq!(
        fresh.call(&["PING"]),
        Frame::simple("PONG"),
        "nopass default: no AUTH needed"
    );
    assert_eq!(c.call(&["ACL", "SETUSER", "default", "off"]), ok());
    assert_eq!(
        Raw::connect(server.port).call(&["PING"]),
        error("NOAUTH Authentication required."),
        "default off: new connections must authenticate"
    );
    assert_eq!(c.call(&["ACL", "SETUSER", "default", "on"]), ok());
}

#[test]
fn an_aclfile_is_loaded_at_start_reloaded_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.acl");
    std::fs::write(
        &path,
        "user alice on >alice ~* &* +@all\n\nuser bob on >bob -@all +@set +acl ~set*\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let server = Server::start_with(&["--aclfile", file]);
    let mut c = Raw::connect(server.port);
    assert_eq!(
        c.call(&["ACL", "USERS"]),
        Frame::Array(vec![bulk("alice"), bulk("bob"), bulk("default")])
    );
    assert_eq!(c.call(&["AUTH", "bob", "bob"]), ok());
    assert_eq!(c.call(&["SADD", "set1", "a"]), Frame::Integer(1));
    assert_eq!(c.call(&["SET", "k", "v"]), noperm_cmd("set"));
    // SAVE writes what is in force; LOAD re-reads the file, replacing the
    // users (and closing their connections, as Redis does).
    assert_eq!(
        c.call(&["ACL", "SETUSER", "eve", "on", ">eve", "+get", "allkeys"]),
        ok()
    );
    assert_eq!(c.call(&["ACL", "SAVE"]), ok());
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.contains("user eve on #"), "{saved}");
    assert_eq!(c.call(&["ACL", "LOAD"]), ok());
    assert_eq!(
        c.try_reply_after(&["PING"]),
        None,
        "bob's connection is closed"
    );
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["AUTH", "eve", "eve"]), ok());
    assert_eq!(c.call(&["GET", "k"]), Frame::Null);
    // A malformed file is refused by ACL LOAD (nothing changes) ...
    std::fs::write(&path, "user alice on\nuser alice off\n").unwrap();
    let mut admin = Raw::connect(server.port);
    assert!(matches!(
        admin.call(&["ACL", "LOAD"]),
        Frame::Error(e) if String::from_utf8_lossy(&e).contains("line 2: Duplicate user 'alice' found")
    ));
    assert_eq!(
        admin.call(&["ACL", "USERS"]),
        Frame::Array(vec![
            bulk("alice"),
            bulk("bob"),
            bulk("default"),
            bulk("eve")
        ])
    );
    // ... and stops a start, naming the line.
    std::fs::write(&path, "user alice on\nuser bob +nosuchcommand\n").unwrap();
    let mut bad = Server::spawn_with(&["--aclfile", file]);
    let status = bad.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = bad.log();
    assert!(log.contains("aclfile") && log.contains("line 2"), "{log}");
    // Without a file, LOAD and SAVE say so.
    let plain = Server::start();
    assert!(matches!(
        Raw::connect(plain.port).call(&["ACL", "LOAD"]),
        Frame::Error(e) if e.starts_with(b"ERR This Redis instance is not configured to use an ACL file")
    ));
}

/// Waits until node `i` has user `name`.
fn wait_for_user(cluster: &Cluster, i: usize, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let users = strings(&Raw::connect(cluster.nodes[i].port).call(&["ACL", "USERS"]));
        if users.contains(&name.to_string()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} never got user {name}: {users:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn users_are_replicated_to_every_node_including_one_that_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(
        3,
        &["--snapshot-every-entries", "20", "--log-tail-entries", "5"],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = Raw::connect(cluster.nodes[leader].port);
    assert_eq!(
        c.call(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">pw",
            "+@read",
            "+acl|whoami",
            "~pub:*"
        ]),
        ok()
    );
    for i in 0..3 {
        wait_for_user(&cluster, i, "reader");
        let mut r = Raw::connect(cluster.nodes[i].port);
        assert_eq!(r.call(&["AUTH", "reader", "pw"]), ok(), "node {i}");
        assert_eq!(r.call(&["ACL", "WHOAMI"]), bulk("reader"));
        // Refused before any redirect, on every node alike.
        assert_eq!(
            r.call(&["SET", "pub:1", "v"]),
            noperm_cmd("set"),
            "node {i}"
        );
        assert_eq!(r.call(&["GET", "secret"]), error(NOPERM_KEY), "node {i}");
        assert_eq!(
            r.call(&["ACL", "DRYRUN", "reader", "GET", "pub:1"]),
            noperm_cmd("acl|dryrun"),
            "node {i}"
        );
    }
    // A follower down while users change catches up by snapshot.
    let lagger = (leader + 1) % 3;
    cluster.nodes[lagger].kill9();
    assert_eq!(
        c.call(&["ACL", "SETUSER", "late", "on", ">pw2", "+@all", "~*"]),
        ok()
    );
    assert_eq!(c.call(&["ACL", "DELUSER", "reader"]), Frame::Integer(1));
    for i in 0..200 {
        let k = format!("k{i}");
        assert_eq!(c.call(&["SET", &k, "v"]), ok());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.nodes[leader]
        .info_field("raft_last_purged_index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        < 50
    {
        assert!(
            Instant::now() < deadline,
            "the leader never purged its log:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.nodes[lagger].restart();
    wait_for_user(&cluster, lagger, "late");
    assert!(
        cluster.nodes[lagger].log().contains("snapshot installed"),
        "the follower did not catch up by snapshot:\n{}",
        cluster.logs()
    );
    let mut r = Raw::connect(cluster.nodes[lagger].port);
    assert_eq!(
        r.call(&["AUTH", "reader", "pw"]),
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(r.call(&["AUTH", "late", "pw2"]), ok());
    assert_eq!(
        strings(&r.call(&["ACL", "LIST"])),
        strings(&Raw::connect(cluster.nodes[leader].port).call(&["ACL", "LIST"]))
    );
}
