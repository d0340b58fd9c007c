//! The Zabbix wire protocol: request parsing and reply rendering. Pure: no I/O.
//!
//! Requests come in two forms (original-appcataloga.md §1):
//! - legacy: one UTF-8 line `backup <host_id> <host_uid> <host_addr> <port> <user> <passwd>`
//!   with no terminator (a trailing CR/LF is tolerated; the password is the rest of the line, so
//!   it may contain spaces). `stop <host_id>` and `status <host_id>` may also be sent alone;
//! - JSON: `{"query_tag": "backup", "host_id": 10367, "host_uid": ..., "host_add": ...,
//!   "host_port": ..., "user": ..., "passwd": ...}` (numbers may be strings; `filter` is ignored).
//!
//! Commands are case-insensitive. The reply is `<json>{...}</json>`: the legacy keys in the
//! legacy order for a valid answer, `{"status":0,"message":...}` for an error. A reply always
//! fits in [`MAX_REPLY_BYTES`] because the legacy client reads it with one `recv(1024)`.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;

use crate::store::gateway::HostStatus;

/// The legacy client reads one `recv(1024)`.
pub const MAX_REPLY_BYTES: usize = 1024;
/// Reply framing.
pub const START_TAG: &str = "<json>";
/// Reply framing.
pub const END_TAG: &str = "</json>";

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Record access data and queue a backup.
    Backup,
    /// Cancel the host's pending backup work.
    Stop,
    /// Answer with the status; queue nothing.
    Status,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Backup => "backup",
            Command::Stop => "stop",
            Command::Status => "status",
        })
    }
}

/// Station access data carried by a `backup` request.
#[derive(Debug, Clone)]
pub struct Access {
    /// Equipment name.
    pub host_uid: String,
    /// IP or DNS name.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub user: String,
    /// SSH password (may be empty: keep the stored one).
    pub password: SecretString,
}

/// A parsed, validated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// Zabbix host id (positive).
    pub host_id: i32,
    /// Access data; always present for `backup`.
    pub access: Option<Access>,
}

/// Why a request was refused. The text is sent to the client as the reply `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Nothing was sent.
    #[error("empty request")]
    Empty,
    /// Bytes are not UTF-8.
    #[error("request is not valid UTF-8")]
    NotUtf8,
    /// Request exceeds the size limit.
    #[error("request too large (more than {0} bytes)")]
    TooLarge(usize),
    /// Unknown command word.
    #[error("unknown command {0:?}: expected backup, stop or status")]
    UnknownCommand(String),
    /// Wrong number of tokens for the command.
    #[error("{command} needs {expected}, got {got} token(s)")]
    TokenCount {
        /// The command.
        command: Command,
        /// What it needs.
        expected: &'static str,
        /// What arrived.
        got: usize,
    },
    /// A field is invalid.
    #[error("invalid {field}: {reason}")]
    Field {
        /// Field name as the client knows it.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// JSON that does not parse.
    #[error("malformed JSON request: {0}")]
    Json(String),
}

/// Whether the bytes received so far can be a complete request, so the server can answer
/// without waiting for the idle gap (a legacy request has no terminator).
pub fn looks_complete(buf: &[u8]) -> bool {
    let text = match std::str::from_utf8(buf) {
        Ok(t) => t,
        Err(_) => return true, // invalid now, invalid later: answer at once
    };
    if text.ends_with('\n') {
        return true;
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str::<Value>(trimmed).is_ok();
    }
    let tokens = trimmed.split(' ').filter(|t| !t.is_empty()).count();
    let command = trimmed.split(' ').next().unwrap_or("").to_ascii_lowercase();
    match command.as_str() {
        "backup" | "stop" | "status" => tokens >= 7,
        "" => false,
        // Unknown word followed by something: it will not become valid.
        _ => tokens >= 2,
    }
}

/// Parses and validates a request.
///
/// # Errors
/// [`ProtocolError`] describing the first problem found.
pub fn parse_request(buf: &[u8]) -> Result<Request, ProtocolError> {
    let text = std::str::from_utf8(buf).map_err(|_| ProtocolError::NotUtf8)?;
    let text = text.trim_end_matches(['\r', '\n']).trim_start();
    if text.trim().is_empty() {
        return Err(ProtocolError::Empty);
    }
    if text.contains('\0') {
        return Err(ProtocolError::Field { field: "request", reason: "contains NUL bytes".into() });
    }
    if text.starts_with('{') { parse_json(text) } else { parse_legacy(text) }
}

fn parse_command(word: &str) -> Result<Command, ProtocolError> {
    match word.trim().to_ascii_lowercase().as_str() {
        "backup" => Ok(Command::Backup),
        "stop" => Ok(Command::Stop),
        "status" => Ok(Command::Status),
        _ => Err(ProtocolError::UnknownCommand(printable(word, 32))),
    }
}

fn parse_legacy(text: &str) -> Result<Request, ProtocolError> {
    let mut parts = text.splitn(7, ' ');
    let command = parse_command(parts.next().unwrap_or(""))?;
    let rest: Vec<&str> = parts.collect();
    let got = rest.len() + 1;
    let host_id = match rest.first() {
        Some(id) => parse_host_id(id)?,
        None => {
            return Err(ProtocolError::TokenCount {
                command,
                expected: if command == Command::Backup { "7 tokens" } else { "2 or 7 tokens" },
                got,
            });
        }
    };
    match (command, rest.len()) {
        (Command::Stop | Command::Status, 1) => Ok(Request { command, host_id, access: None }),
        (_, 6) => {
            let access = Access {
                host_uid: validate_text("host_uid", rest[1], 100)?,
                address: validate_address(rest[2])?,
                port: parse_port(rest[3])?,
                user: validate_text("user", rest[4], 64)?,
                password: validate_password(rest[5])?,
            };
            Ok(Request { command, host_id, access: Some(access) })
        }
        _ => Err(ProtocolError::TokenCount {
            command,
            expected: if command == Command::Backup { "7 tokens" } else { "2 or 7 tokens" },
            got,
        }),
    }
}

fn parse_json(text: &str) -> Result<Request, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| ProtocolError::Json("expected a JSON object".into()))?;
    let get_str = |key: &'static str| -> Result<Option<String>, ProtocolError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(ProtocolError::Field {
                field: key,
                reason: format!("expected a string, got {}", json_type(other)),
            }),
        }
    };
    let command_word = match obj.get("query_tag").or_else(|| obj.get("command")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ProtocolError::Field {
                field: "query_tag",
                reason: format!("expected a string, got {}", json_type(other)),
            });
        }
        None => {
            return Err(ProtocolError::Field { field: "query_tag", reason: "missing".into() });
        }
    };
    let command = parse_command(&command_word)?;
    let host_id = match obj.get("host_id") {
        Some(Value::Number(n)) => parse_host_id(&n.to_string())?,
        Some(Value::String(s)) => parse_host_id(s)?,
        Some(other) => {
            return Err(ProtocolError::Field {
                field: "host_id",
                reason: format!("expected a positive integer, got {}", json_type(other)),
            });
        }
        None => {
            return Err(ProtocolError::Field { field: "host_id", reason: "missing".into() });
        }
    };
    let host_uid = get_str("host_uid")?;
    if command != Command::Backup && host_uid.is_none() {
        return Ok(Request { command, host_id, access: None });
    }
    let require = |key: &'static str, v: Option<String>| {
        v.ok_or(ProtocolError::Field { field: key, reason: "missing".into() })
    };
    let port = match obj.get("host_port") {
        Some(Value::Number(n)) => parse_port(&n.to_string())?,
        Some(Value::String(s)) => parse_port(s)?,
        None | Some(Value::Null) => 22,
        Some(other) => {
            return Err(ProtocolError::Field {
                field: "host_port",
                reason: format!("expected a port number, got {}", json_type(other)),
            });
        }
    };
    let access = Access {
        host_uid: validate_text("host_uid", &require("host_uid", host_uid)?, 100)?,
        address: validate_address(&require("host_add", get_str("host_add")?)?)?,
        port,
        user: validate_text("user", &require("user", get_str("user")?)?, 64)?,
        password: validate_password(&get_str("passwd")?.unwrap_or_default())?,
    };
    Ok(Request { command, host_id, access: Some(access) })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_host_id(s: &str) -> Result<i32, ProtocolError> {
    let err = |reason: &str| ProtocolError::Field {
        field: "host_id",
        reason: format!(
            "{:?} {reason} (expected the Zabbix {{HOST.ID}}, a positive integer)",
            printable(s, 24)
        ),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("is not a number"));
    }
    match s.parse::<i32>() {
        Ok(0) => Err(err("is zero")),
        Ok(v) => Ok(v),
        Err(_) => Err(err("is too large")),
    }
}

fn parse_port(s: &str) -> Result<u16, ProtocolError> {
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| ProtocolError::Field {
        field: "host_port",
        reason: format!("{:?} is not a TCP port (1-65535)", printable(s, 24)),
    })
}

fn validate_text(field: &'static str, s: &str, max: usize) -> Result<String, ProtocolError> {
    if s.is_empty() {
        return Err(ProtocolError::Field { field, reason: "empty".into() });
    }
    if s.chars().count() > max {
        return Err(ProtocolError::Field { field, reason: format!("longer than {max} characters") });
    }
    if s.chars().any(char::is_control) {
        return Err(ProtocolError::Field { field, reason: "contains control characters".into() });
    }
    Ok(s.to_string())
}

fn validate_address(s: &str) -> Result<String, ProtocolError> {
    let v = validate_text("host_add", s, 255)?;
    if v.chars().any(char::is_whitespace) {
        return Err(ProtocolError::Field { field: "host_add", reason: "contains spaces".into() });
    }
    Ok(v)
}

fn validate_password(s: &str) -> Result<SecretString, ProtocolError> {
    // Never echo the password, not even in an error.
    if s.chars().count() > 256 {
        return Err(ProtocolError::Field { field: "passwd", reason: "longer than 256 characters".into() });
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ProtocolError::Field { field: "passwd", reason: "contains control characters".into() });
    }
    Ok(SecretString::from(s.to_string()))
}

/// At most `max` characters of `s`, with control characters escaped (for messages and logs).
pub fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).flat_map(char::escape_debug).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// A timestamp in the reply: epoch seconds, or `"N/A"` (as the original).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epoch {
    /// Seconds since 1970 (UTC).
    At(f64),
    /// Never happened.
    NotAvailable,
}

impl Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Epoch::At(v) => s.serialize_f64(*v),
            Epoch::NotAvailable => s.serialize_str("N/A"),
        }
    }
}

impl From<Option<DateTime<Utc>>> for Epoch {
    fn from(t: Option<DateTime<Utc>>) -> Epoch {
        match t {
            Some(t) => Epoch::At(t.timestamp_micros() as f64 / 1e6),
            None => Epoch::NotAvailable,
        }
    }
}

/// The legacy status reply, keys in the original order.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReply {
    /// Zabbix host id.
    pub host: i32,
    /// Files copied to the server so far.
    pub host_files: i64,
    /// 1 while the host's backup task is pending or running.
    pub pending_host_task: i64,
    /// Last successful host check.
    pub last_host_check: Epoch,
    /// Consecutive failed attempts of the host task.
    pub host_check_error: i64,
    /// Files waiting to be copied.
    pub pending_backup: i64,
    /// Last verified copy.
    pub last_backup: Epoch,
    /// Files whose copy failed.
    pub backup_error: i64,
    /// Files waiting to be catalogued.
    pub pending_processing: i64,
    /// Files whose cataloguing failed.
    pub processing_error: i64,
    /// Last catalogued file.
    pub last_processing: Epoch,
    /// 1: valid answer.
    pub status: u8,
    /// What happened and the host's condition.
    pub message: String,
}

impl StatusReply {
    /// Builds the reply for a host.
    pub fn new(s: &HostStatus, message: String) -> StatusReply {
        StatusReply {
            host: s.host,
            host_files: s.host_files,
            pending_host_task: s.pending_host_task,
            last_host_check: s.last_host_check.into(),
            host_check_error: s.host_check_error,
            pending_backup: s.pending_backup,
            last_backup: s.last_backup.into(),
            backup_error: s.backup_error,
            pending_processing: s.pending_processing,
            processing_error: s.processing_error,
            last_processing: s.last_processing.into(),
            status: 1,
            message,
        }
    }
}

/// Frames a status reply, shortening the message if needed to fit [`MAX_REPLY_BYTES`].
pub fn render_status(reply: &StatusReply) -> Vec<u8> {
    let mut reply = reply.clone();
    loop {
        let body = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
        let framed = format!("{START_TAG}{body}{END_TAG}");
        if framed.len() <= MAX_REPLY_BYTES || reply.message.is_empty() {
            return framed.into_bytes();
        }
        let excess = framed.len() - MAX_REPLY_BYTES + 1;
        let keep = reply.message.chars().count().saturating_sub(excess);
        reply.message = reply.message.chars().take(keep).collect::<String>() + "…";
    }
}

/// Frames an error reply (`status` 0).
pub fn render_error(message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct ErrorReply<'a> {
        status: u8,
        message: &'a str,
    }
    let mut msg: String = message.to_string();
    loop {
        let body =
            serde_json::to_string(&ErrorReply { status: 0, message: &msg }).unwrap_or_else(|_| "{}".into());
        let framed = format!("{START_TAG}{body}{END_TAG}");
        if framed.len() <= MAX_REPLY_BYTES || msg.is_empty() {
            return framed.into_bytes();
        }
        let keep = msg.chars().count().saturating_sub(framed.len() - MAX_REPLY_BYTES + 1);
        msg = msg.chars().take(keep).collect::<String>() + "…";
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn legacy_backup() {
        let r = parse_request(b"backup 10367 RFEye002080 10.0.0.5 2828 sshUser my secret pw\r\n").unwrap();
        assert_eq!(r.command, Command::Backup);
        assert_eq!(r.host_id, 10367);
        let a = r.access.unwrap();
        assert_eq!(a.port, 2828);
        assert_eq!(a.password.expose_secret(), "my secret pw");
    }

    #[test]
    fn commands_are_case_insensitive_and_short_forms() {
        assert_eq!(parse_request(b"BACKUP 1 u a 22 x y").unwrap().command, Command::Backup);
        assert_eq!(parse_request(b"Status 5").unwrap().command, Command::Status);
        assert_eq!(parse_request(b"stop 5\n").unwrap().command, Command::Stop);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_request(b"").unwrap_err(), ProtocolError::Empty);
        assert_eq!(parse_request(b"\xff\xfe").unwrap_err(), ProtocolError::NotUtf8);
        assert!(matches!(parse_request(b"backup 1 2"), Err(ProtocolError::TokenCount { .. })));
        assert!(matches!(parse_request(b"foo 1 2"), Err(ProtocolError::UnknownCommand(_))));
        for id in ["abc", "-5", "0", "99999999999", "1e3"] {
            let req = format!("backup {id} u a 22 x y");
            assert!(
                matches!(parse_request(req.as_bytes()), Err(ProtocolError::Field { field: "host_id", .. })),
                "{id}"
            );
        }
        assert!(matches!(
            parse_request(b"backup 1 u a 70000 x y"),
            Err(ProtocolError::Field { field: "host_port", .. })
        ));
        assert!(parse_request(b"backup 1 u a 22 x y\0z").is_err());
    }

    #[test]
    fn json_form() {
        let r = parse_request(
            br#"{"query_tag":"BACKUP","host_id":"10806","host_uid":"CWSM211009","host_add":"10.10.10.20","host_port":2828,"user":"celplan","passwd":"secret","filter":{"mode":"NONE"}}"#,
        )
        .unwrap();
        assert_eq!(r.host_id, 10806);
        assert_eq!(r.access.unwrap().port, 2828);
        let e = parse_request(br#"{"query_tag":"backup","host_id":[1],"host_uid":"u"}"#).unwrap_err();
        assert!(matches!(e, ProtocolError::Field { field: "host_id", .. }), "{e}");
        let e = parse_request(br#"{"query_tag":"backup","host_id":1,"host_uid":5,"host_add":"a","user":{}}"#)
            .unwrap_err();
        assert!(matches!(e, ProtocolError::Field { field: "user", .. }), "{e}");
        assert!(matches!(parse_request(b"{not json"), Err(ProtocolError::Json(_))));
    }

    #[test]
    fn completeness() {
        assert!(looks_complete(b"backup 1 u a 22 x y"));
        assert!(!looks_complete(b"backup 1 u a"));
        assert!(looks_complete(b"backup 1\n"));
        assert!(looks_complete(br#"{"a":1}"#));
        assert!(!looks_complete(br#"{"a":"#));
        assert!(!looks_complete(b"b"));
    }

    #[test]
    fn replies_fit_and_parse() {
        let long = "x".repeat(5000);
        let e = render_error(&long);
        assert!(e.len() <= MAX_REPLY_BYTES);
        let s = String::from_utf8(e).unwrap();
        let body = &s[START_TAG.len()..s.len() - END_TAG.len()];
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 0);
        let st = HostStatus {
            host: 1,
            host_files: 0,
            pending_host_task: 1,
            last_host_check: None,
            host_check_error: 0,
            pending_backup: 0,
            last_backup: None,
            backup_error: 0,
            pending_processing: 0,
            processing_error: 0,
            last_processing: None,
            condition: 0,
            condition_message: None,
            task_status: Some(1),
            task_message: None,
            has_password: true,
        };
        let r = render_status(&StatusReply::new(&st, "é".repeat(2000)));
        assert!(r.len() <= MAX_REPLY_BYTES);
        let s = String::from_utf8(r).unwrap();
        assert!(s.contains("\"last_backup\":\"N/A\""));
    }
}
