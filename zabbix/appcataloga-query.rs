//! `appcataloga-query`: the Zabbix external check that asks appcataloga to back a station up.
//!
//! A drop-in replacement for the original `queryCataloga.py` (original-appcataloga.md §1.1), so
//! existing Zabbix items keep working: the same `key=value` arguments and defaults, the same
//! warnings in `message_query`, the same 7-token request without terminator, and one JSON object
//! on stdout made of the server's keys plus `request` (user and password masked), `status_query`
//! and `message_query`. What changes is what the original got wrong:
//! - a value is split at the FIRST `=` (a password may contain `=`);
//! - the reply is read until EOF or `</json>` (bounded: 64 KiB and the whole timeout), not with
//!   one `recv(1024)`;
//! - masking replaces the user and password tokens literally (the original used them as regexes),
//!   and the password is never printed anywhere, not even inside a server message;
//! - every outcome, malformed replies included, prints valid JSON and exits 0 (Zabbix stores
//!   stdout; the original crashed with a traceback on a malformed reply).
//!
//! Only `std` and `serde_json`: a small blocking client that starts fast under Zabbix's 3 s
//! external-check limit.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Where the daemon listens when neither `server=` nor the environment says otherwise.
const DEFAULT_SERVER: &str = "127.0.0.1:5555";
/// Environment variable naming the server (`HOST:PORT`), below `server=` in precedence.
const SERVER_ENV: &str = "APPCATALOGA_QUERY_SERVER";
/// Port used when `server=` names a host without a port.
const DEFAULT_PORT: u16 = 5555;
/// Largest reply read; a reply is at most 1024 bytes, so this is generous.
const MAX_REPLY: usize = 64 * 1024;
/// What replaces the user and the password in `request`.
const MASK: &str = "*****";
/// Reply framing (matched case-insensitively, as the original lower-cased the reply).
const START_TAG: &str = "<json>";
const END_TAG: &str = "</json>";
/// Longest excerpt of a bad reply quoted in an error message.
const EXCERPT_CHARS: usize = 200;

const USAGE: &str = "usage: appcataloga-query host_id=<id> host_uid=<uid> host_add=<address> \
host_port=<port> user=<user> passwd=<password> [query_tag=backup|status|stop] [timeout=<seconds>] \
[server=<host:port>]\n(server defaults to $APPCATALOGA_QUERY_SERVER, then 127.0.0.1:5555)";

/// The arguments, after defaults. Defaults are those of the original `defaultConfig.py`.
struct Args {
    host_id: String,
    host_uid: String,
    host_add: String,
    host_port: i64,
    user: String,
    passwd: String,
    query_tag: String,
    timeout: u64,
    server: String,
}

/// Parses `key=value` arguments like the original: unknown keys and bad values are ignored with
/// a warning, missing keys take their default with a warning. Returns the warning text
/// (`Warning: a; b` or `none`).
fn parse_args(argv: &[String], env_server: Option<String>) -> (Args, String) {
    let mut args = Args {
        host_id: "10367".into(),
        host_uid: "RFEye002080".into(),
        host_add: "192.168.1.138".into(),
        host_port: 22,
        user: "sshUser".into(),
        passwd: "sshuserpass".into(),
        query_tag: "backup".into(),
        timeout: 2,
        server: env_server.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| DEFAULT_SERVER.into()),
    };
    let mut warnings: Vec<String> = Vec::new();
    let mut set: Vec<&'static str> = Vec::new();
    for (i, arg) in argv.iter().enumerate() {
        let Some((key, value)) = arg.split_once('=') else {
            // Never quote the argument: it could be a password given without its key.
            warnings.push(format!("Argument #{} without '=' ignored", i + 1));
            continue;
        };
        let key = key.trim();
        let name: &'static str = match key {
            "host_id" => {
                args.host_id = value.to_string();
                "host_id"
            }
            "host_uid" => {
                args.host_uid = value.to_string();
                "host_uid"
            }
            "host_add" => {
                args.host_add = value.to_string();
                "host_add"
            }
            "host_port" => match value.trim().parse::<i64>() {
                Ok(p) => {
                    args.host_port = p;
                    "host_port"
                }
                Err(_) => {
                    warnings.push(format!("Invalid host_port {:?} (not an integer) ignored", excerpt(value)));
                    continue;
                }
            },
            "user" => {
                args.user = value.to_string();
                "user"
            }
            "passwd" => {
                args.passwd = value.to_string();
                "passwd"
            }
            "query_tag" => {
                args.query_tag = value.to_string();
                "query_tag"
            }
            "timeout" => match value.trim().parse::<u64>() {
                Ok(t) if t > 0 => {
                    args.timeout = t;
                    "timeout"
                }
                _ => {
                    warnings.push(format!(
                        "Invalid timeout {:?} (not a positive integer) ignored",
                        excerpt(value)
                    ));
                    continue;
                }
            },
            "server" => {
                args.server = value.trim().to_string();
                "server"
            }
            _ => {
                warnings.push(format!("Unknown argument {:?} ignored", excerpt(key)));
                continue;
            }
        };
        set.push(name);
    }
    for (key, message) in [
        ("host_id", "Using default host id"),
        ("host_uid", "Using default host uid"),
        ("host_add", "Using default host address"),
        ("host_port", "Using default host port"),
        ("user", "Using default user"),
        ("passwd", "Using default password"),
        ("query_tag", "Using default query tag"),
        ("timeout", "Using default timeout"),
    ] {
        if !set.contains(&key) {
            warnings.push(message.to_string());
        }
    }
    let message =
        if warnings.is_empty() { "none".to_string() } else { format!("Warning: {}", warnings.join("; ")) };
    (args, message)
}

/// At most [`EXCERPT_CHARS`] characters of `s`.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT_CHARS).collect();
    if s.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// The legacy request: `tag id uid address port user passwd`, with the user and password given.
fn request_line(a: &Args, user: &str, passwd: &str) -> String {
    format!("{} {} {} {} {} {} {}", a.query_tag, a.host_id, a.host_uid, a.host_add, a.host_port, user, passwd)
}

/// Masks the password wherever it stands as a whole token in `s` (not inside a longer word, so
/// a short password does not mangle ordinary text such as "backup"). The daemon never echoes the
/// password, but a secret must not reach Zabbix even if a server did.
fn scrub(s: &str, passwd: &str) -> String {
    if passwd.is_empty() {
        return s.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(s.len());
    let mut pos = 0; // s[..pos] is already in `out`
    let mut from = 0; // where to search next
    while let Some(i) = s[from..].find(passwd).map(|i| i + from) {
        let end = i + passwd.len();
        if word(s[..i].chars().next_back()) || word(s[end..].chars().next()) {
            // Part of a longer word: look again one character further.
            from = i + s[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            continue;
        }
        out.push_str(&s[pos..i]);
        out.push_str(MASK);
        pos = end;
        from = end;
    }
    out.push_str(&s[pos..]);
    out
}

/// Scrubs every string value of a JSON value (the keys are the server's fixed names).
fn scrub_value(v: Value, passwd: &str) -> Value {
    match v {
        Value::String(s) => Value::String(scrub(&s, passwd)),
        Value::Array(items) => Value::Array(items.into_iter().map(|i| scrub_value(i, passwd)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, scrub_value(v, passwd))).collect())
        }
        other => other,
    }
}

/// Why the query failed; rendered as the original's `message_query` texts.
enum Failure {
    Connect(String),
    Receive(String),
    Decode(String, String),
    Malformed(String, String),
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Connect(e) => format!("Error: {e}; Could establish socket connection"),
            Failure::Receive(e) => format!("Error: {e}; Error receiving data"),
            Failure::Decode(e, raw) => format!("Error: {e}. Error decoding data with utf-8: {raw}"),
            Failure::Malformed(e, raw) => format!("Error: {e}; Malformed JSON received: {raw}"),
        }
    }
}

/// Time left before `deadline`, or a timeout error.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))
}

/// Resolves `HOST:PORT` (or a bare host, on port 5555).
fn resolve(server: &str) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = match server.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            let host = server.trim_start_matches('[').trim_end_matches(']');
            match (host, DEFAULT_PORT).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(_) => return Err(e),
            }
        }
    };
    if addrs.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{server} has no address")));
    }
    Ok(addrs)
}

/// Connects to the first address that answers within the deadline and sends the request.
fn connect_and_send(server: &str, request: &[u8], deadline: Instant) -> Result<TcpStream, Failure> {
    let addrs = resolve(server).map_err(|e| Failure::Connect(format!("{server}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        let left = match remaining(deadline) {
            Ok(d) => d,
            Err(e) => {
                last = Some(e);
                break;
            }
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                let sent = (|| {
                    stream.set_write_timeout(Some(remaining(deadline)?))?;
                    (&stream).write_all(request)?;
                    // No terminator, as the original; the half-close tells the server at once
                    // that the request is complete (it would otherwise wait for a quiet gap).
                    let _ = stream.shutdown(Shutdown::Write);
                    Ok::<(), std::io::Error>(())
                })();
                return match sent {
                    Ok(()) => Ok(stream),
                    Err(e) => Err(Failure::Connect(format!("{addr}: {e}"))),
                };
            }
            Err(e) => last = Some(std::io::Error::new(e.kind(), format!("{addr}: {e}"))),
        }
    }
    Err(Failure::Connect(last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into())))
}

/// Reads until EOF or `</json>`, at most [`MAX_REPLY`] bytes, before the deadline.
fn receive(mut stream: TcpStream, deadline: Instant) -> Result<Vec<u8>, Failure> {
    let mut reply = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let left = remaining(deadline).map_err(|e| Failure::Receive(e.to_string()))?;
        stream.set_read_timeout(Some(left)).map_err(|e| Failure::Receive(e.to_string()))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Failure::Receive("timed out".into()));
            }
            Err(e) => return Err(Failure::Receive(e.to_string())),
        };
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > MAX_REPLY {
            return Err(Failure::Receive(format!("reply larger than {MAX_REPLY} bytes")));
        }
        if contains_ci(&reply, END_TAG.as_bytes()) {
            break;
        }
    }
    Ok(reply)
}

/// Case-insensitive (ASCII) substring test.
fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// The JSON object between the last `<json>` and the last `</json>`.
fn extract(reply: &[u8], passwd: &str) -> Result<Map<String, Value>, Failure> {
    let text = std::str::from_utf8(reply).map_err(|e| {
        Failure::Decode(e.to_string(), scrub(&excerpt(&String::from_utf8_lossy(reply)), passwd))
    })?;
    let raw = || scrub(&excerpt(text), passwd);
    // ASCII lower-casing keeps byte offsets, so indices found in `lower` are valid in `text`.
    let lower = text.to_ascii_lowercase();
    let start = lower.rfind(START_TAG).map(|i| i + START_TAG.len());
    let end = lower.rfind(END_TAG);
    let body = match (start, end) {
        (Some(s), Some(e)) if s <= e => &text[s..e],
        _ => return Err(Failure::Malformed("no <json>…</json> in the reply".into(), raw())),
    };
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure::Malformed("the reply is not a JSON object".into(), raw())),
        Err(e) => Err(Failure::Malformed(e.to_string(), raw())),
    }
}

/// Runs the query and returns the JSON object to print.
fn query(argv: &[String], env_server: Option<String>) -> Value {
    let (args, warnings) = parse_args(argv, env_server);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let request = request_line(&args, &args.user, &args.passwd);
    let outcome = connect_and_send(&args.server, request.as_bytes(), deadline)
        .and_then(|stream| receive(stream, deadline))
        .and_then(|reply| extract(&reply, &args.passwd));
    match outcome {
        Ok(map) => {
            let mut out = match scrub_value(Value::Object(map), &args.passwd) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            out.insert("request".into(), Value::String(request_line(&args, MASK, MASK)));
            out.insert("status_query".into(), Value::from(1));
            out.insert("message_query".into(), Value::String(scrub(&warnings, &args.passwd)));
            Value::Object(out)
        }
        Err(f) => {
            let mut out = Map::new();
            out.insert("status_query".into(), Value::from(0));
            out.insert("message_query".into(), Value::String(scrub(&f.message(), &args.passwd)));
            Value::Object(out)
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    let out = query(&argv, std::env::var(SERVER_ENV).ok());
    let text = serde_json::to_string(&out)
        .unwrap_or_else(|_| r#"{"status_query":0,"message_query":"Error: cannot render JSON"}"#.into());
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_at_first_equals_and_warns_for_defaults() {
        let (a, w) = parse_args(&argv(&["passwd=a=b=c", "host_id=7"]), None);
        assert_eq!(a.passwd, "a=b=c");
        assert_eq!(a.host_id, "7");
        assert_eq!(a.server, DEFAULT_SERVER);
        assert!(w.starts_with("Warning: Using default host uid; "), "{w}");
        assert!(w.ends_with("Using default timeout"), "{w}");
        assert!(!w.contains("default password"));
    }

    #[test]
    fn bad_values_and_unknown_keys() {
        let (a, w) =
            parse_args(&argv(&["host_port=x", "timeout=0", "colour=red", "secret"]), Some("h:1".into()));
        assert_eq!(a.host_port, 22);
        assert_eq!(a.timeout, 2);
        assert_eq!(a.server, "h:1");
        assert!(w.contains("Invalid host_port \"x\""), "{w}");
        assert!(w.contains("Invalid timeout \"0\""), "{w}");
        assert!(w.contains("Unknown argument \"colour\" ignored"), "{w}");
        assert!(w.contains("Argument #4 without '=' ignored"), "{w}");
        assert!(!w.contains("secret"), "{w}");
        assert!(w.contains("Using default host port") && w.contains("Using default timeout"));
    }

    #[test]
    fn no_warning_is_none() {
        let all = argv(&[
            "host_id=1",
            "host_uid=u",
            "host_add=a",
            "host_port=2",
            "user=x",
            "passwd=y",
            "query_tag=status",
            "timeout=3",
        ]);
        assert_eq!(parse_args(&all, None).1, "none");
    }

    #[test]
    fn extracts_the_last_object() {
        let m = extract(b"junk<JSON>{\"a\":1}</json><json>{\"status\": 1}</json>", "pw").ok().unwrap();
        assert_eq!(m.get("status"), Some(&Value::from(1)));
        assert!(matches!(extract(b"<json>{oops</json>", "pw"), Err(Failure::Malformed(..))));
        assert!(matches!(extract(b"nothing", "pw"), Err(Failure::Malformed(..))));
        assert!(matches!(extract(b"<json>[1]</json>", "pw"), Err(Failure::Malformed(..))));
        assert!(matches!(extract(b"<json>\xff</json>", "pw"), Err(Failure::Decode(..))));
    }

    #[test]
    fn masking_is_literal() {
        let (a, _) = parse_args(&argv(&["user=.*", "passwd=p(a)ss"]), None);
        let masked = request_line(&a, MASK, MASK);
        assert_eq!(masked, "backup 10367 RFEye002080 192.168.1.138 22 ***** *****");
        assert_eq!(scrub("x p(a)ss y", &a.passwd), "x ***** y");
        assert_eq!(scrub("p(a)ss", &a.passwd), "*****");
        assert_eq!(scrub("backup queued", "p"), "backup queued");
        assert_eq!(scrub("passwd=p, p", "p"), "passwd=*****, *****");
        assert_eq!(scrub("ppp pp", "pp"), "ppp *****");
    }
}
