//! The Zabbix kit: the `appcataloga-query` external check against the real daemon, and the
//! structure of the Zabbix template (`zabbix/appcataloga_template.yaml`).
//!
//! Zabbix stores what the check prints (stdout and stderr together), so every case checks that
//! exactly one valid JSON object is printed, the exit status is 0, and the password never shows.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

const QUERY: &str = env!("CARGO_BIN_EXE_appcataloga-query");
const PASSWORD: &str = "CANARY=pw.*x";

/// Runs the check with `args` (and a clean environment); returns the output and the parsed JSON.
fn run(args: &[String]) -> (Output, Value) {
    let out = Command::new(QUERY).args(args).env_remove("APPCATALOGA_QUERY_SERVER").output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line of output: {stdout:?}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}"));
    assert!(v.is_object(), "{v}");
    (out, v)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn assert_no_password(out: &Output, password: &str) {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(password), "password printed: {all}");
    assert!(out.stderr.is_empty(), "nothing on stderr (Zabbix stores it): {:?}", out.stderr);
}

fn full_args(server: &str, host_id: &str, password: &str) -> Vec<String> {
    vec![
        format!("host_id={host_id}"),
        "host_uid=RFEye002080".into(),
        "host_add=rfeye002080.anatel.gov.br".into(),
        "host_port=2828".into(),
        "user=sshUser".into(),
        format!("passwd={password}"),
        "query_tag=backup".into(),
        "timeout=5".into(),
        format!("server={server}"),
    ]
}

#[test]
fn query_reports_the_daemon_keys_and_masks_the_credentials() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let (out, v) = run(&full_args(&d.addr.to_string(), "10367", PASSWORD));
    assert_no_password(&out, PASSWORD);
    for key in LEGACY_KEYS.iter().copied().chain(["request", "status_query", "message_query"]) {
        assert!(v.get(key).is_some(), "key {key} missing: {v}");
    }
    assert_eq!(v["status"], 1, "{v}");
    assert_eq!(v["host"], 10367);
    assert_eq!(v["status_query"], 1);
    assert_eq!(v["message_query"], "none", "every argument was given: {v}");
    assert_eq!(v["request"], "backup 10367 RFEye002080 rfeye002080.anatel.gov.br 2828 ***** *****");
    // The value was split at the first '=' only: the daemon received the whole password (the
    // task is queued and a sealed password stored; never the clear one).
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE FK_HOST = 10367"), "1");
    assert_eq!(
        db.value("SELECT CONCAT_WS('|', NA_HOST_ADDRESS, NA_HOST_PORT, NA_HOST_USER, IFNULL(NA_HOST_PASSWORD, 'NULL'), BN_HOST_PASSWORD_SEALED IS NOT NULL) FROM {BP}.HOST WHERE ID_HOST = 10367"),
        "rfeye002080.anatel.gov.br|2828|sshUser|NULL|1"
    );
    assert!(!d.log_text().contains("CANARY"), "password in the daemon log");

    // A short password masks the request tokens but does not mangle the keys or the message.
    let (out, v) = run(&full_args(&d.addr.to_string(), "10368", "p"));
    assert!(out.stderr.is_empty());
    assert_eq!(v["pending_backup"], 0, "{v}");
    assert!(!v["message"].as_str().unwrap().contains("*****"), "{v}");
    assert_eq!(v["request"], "backup 10368 RFEye002080 rfeye002080.anatel.gov.br 2828 ***** *****");

    // Polling again is idempotent: still one task.
    let (out, v) = run(&full_args(&d.addr.to_string(), "10367", PASSWORD));
    assert_no_password(&out, PASSWORD);
    assert_eq!(v["status"], 1);
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE FK_HOST = 10367"), "1");
}

#[test]
fn query_warns_like_the_original() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let server = format!("server={}", d.addr);

    // Only a host id (and the server): every other key takes its default, with a warning each.
    let (out, v) = run(&args(&["host_id=20001", &server, "query_tag=status"]));
    assert_no_password(&out, "sshuserpass");
    assert_eq!(v["status_query"], 1, "{v}");
    assert_eq!(
        v["message_query"],
        "Warning: Using default host uid; Using default host address; Using default host port; \
         Using default user; Using default password; Using default timeout"
    );

    // Unknown keys, a bad integer, an argument without '=': ignored with a warning; the bad
    // value falls back to the default (and says so).
    let mut a = full_args(&d.addr.to_string(), "20002", PASSWORD);
    a.push("colour=blue".into());
    a[3] = "host_port=twenty-two".into();
    a.push("stray-word".into());
    let (out, v) = run(&a);
    assert_no_password(&out, PASSWORD);
    let w = v["message_query"].as_str().unwrap();
    assert!(w.starts_with("Warning: "), "{w}");
    assert!(w.contains("Invalid host_port \"twenty-two\""), "{w}");
    assert!(w.contains("Unknown argument \"colour\" ignored"), "{w}");
    assert!(w.contains("without '=' ignored") && !w.contains("stray-word"), "{w}");
    assert!(w.contains("Using default host port"), "{w}");
    assert_eq!(v["request"], "backup 20002 RFEye002080 rfeye002080.anatel.gov.br 22 ***** *****");
    assert_eq!(v["status"], 1, "{v}");

    // The server from the environment when no server= is given.
    let out = Command::new(QUERY)
        .args(["host_id=20003", "query_tag=status", "timeout=5"])
        .env("APPCATALOGA_QUERY_SERVER", d.addr.to_string())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status_query"], 1, "{v}");
    assert_eq!(v["status"], 0, "status of an unknown host is an error reply: {v}");
}

#[test]
fn query_reports_a_refused_connection_as_json() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (out, v) = run(&full_args(&format!("127.0.0.1:{port}"), "1", PASSWORD));
    assert_no_password(&out, PASSWORD);
    assert_eq!(v["status_query"], 0);
    let m = v["message_query"].as_str().unwrap();
    assert!(m.starts_with("Error: ") && m.ends_with("; Could establish socket connection"), "{m}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
}

#[test]
fn query_turns_daemon_errors_and_bad_replies_into_json() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    // A request the daemon refuses: its error reply is passed through as valid JSON.
    let (out, v) = run(&full_args(&d.addr.to_string(), "abc", PASSWORD));
    assert_no_password(&out, PASSWORD);
    assert_eq!(v["status_query"], 1, "{v}");
    assert_eq!(v["status"], 0, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(v["request"], "backup abc RFEye002080 rfeye002080.anatel.gov.br 2828 ***** *****");

    // A server that answers garbage, nothing, or too slowly: still one JSON object.
    for (reply, delay_ms, expect) in [
        (&b"<json>{\"status\": 1, oops</json>"[..], 0, "Malformed JSON received"),
        (&b"no tags at all"[..], 0, "Malformed JSON received"),
        (&b"<json>\xff\xfe</json>"[..], 0, "Error decoding data with utf-8"),
        (&b""[..], 0, "Malformed JSON received"),
        (&b"<json>{}</json>"[..], 3000, "Error receiving data"),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = reply.to_vec();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let _ = s.read_to_end(&mut req);
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let _ = s.write_all(&reply);
            String::from_utf8_lossy(&req).into_owned()
        });
        let mut a = full_args(&addr.to_string(), "7", PASSWORD);
        a[7] = "timeout=1".into();
        let (out, v) = run(&a);
        let request = server.join().unwrap();
        assert_eq!(
            request,
            format!("backup 7 RFEye002080 rfeye002080.anatel.gov.br 2828 sshUser {PASSWORD}"),
            "legacy 7-token request, no terminator"
        );
        assert_no_password(&out, PASSWORD);
        assert_eq!(v["status_query"], 0, "{v}");
        let m = v["message_query"].as_str().unwrap();
        assert!(m.starts_with("Error: ") && m.contains(expect), "{expect}: {m}");
    }
}

// ---------------------------------------------------------------------------------------------
// The template.

/// The template as JSON, converted by PyYAML (present on the test machines; the structure check
/// is skipped, with a message, when it is not).
fn template() -> Option<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("zabbix/appcataloga_template.yaml");
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&path)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("No module named 'yaml'"), "the template is not valid YAML: {err}");
            eprintln!("SKIP template structure check: PyYAML is not installed");
            None
        }
        Err(e) => {
            eprintln!("SKIP template structure check: python3 not available ({e})");
            None
        }
    }
}

/// Item keys referenced in a trigger expression: `/<template>/<key>)` or `/<template>/<key>,`.
fn referenced_keys(expression: &str, template: &str) -> Vec<String> {
    let marker = format!("/{template}/");
    let mut keys = Vec::new();
    let mut rest = expression;
    while let Some(i) = rest.find(&marker) {
        rest = &rest[i + marker.len()..];
        let end = rest.find([',', ')']).expect("unterminated item reference");
        keys.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    keys
}

fn is_uuid(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

#[test]
fn template_is_consistent() {
    let Some(doc) = template() else { return };
    let export = &doc["zabbix_export"];
    assert_eq!(export["version"], "7.0");
    let templates = export["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1);
    let t = &templates[0];
    assert_eq!(t["template"], "appCataloga");
    let name = t["template"].as_str().unwrap();

    let mut uuids = vec![&t["uuid"]];
    let items = t["items"].as_array().unwrap();
    let external: Vec<&Value> = items.iter().filter(|i| i["type"] == "EXTERNAL").collect();
    assert_eq!(external.len(), 1);
    let master = external[0];
    let master_key = master["key"].as_str().unwrap();
    assert!(master_key.starts_with("appcataloga-query[\"host_id={HOST.ID}\","), "{master_key}");
    for param in ["host_uid={HOST.HOST}", "host_add={HOST.CONN}", "user={$SSH_USER}", "passwd={$SSH_PASSWD}"]
    {
        assert!(master_key.contains(&format!("\"{param}\"")), "{param} in {master_key}");
    }
    assert_eq!(master["value_type"], "TEXT");
    assert_eq!(master["trends"], "0");

    let keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
    let mut triggers: Vec<&Value> = Vec::new();
    for item in items {
        uuids.push(&item["uuid"]);
        if item["type"] == "DEPENDENT" {
            assert_eq!(item["master_item"]["key"], master_key, "master of {}", item["key"]);
            let pre = item["preprocessing"].as_array().expect("preprocessing");
            assert_eq!(pre[0]["type"], "JSONPATH", "{}", item["key"]);
            let path = pre[0]["parameters"][0].as_str().unwrap();
            assert!(path.starts_with("$."), "{path}");
            assert!(
                ["FLOAT", "UNSIGNED", "CHAR", "TEXT"]
                    .contains(&item["value_type"].as_str().unwrap_or("FLOAT")),
                "{}",
                item["key"]
            );
        } else {
            assert_eq!(item["type"], "EXTERNAL");
        }
        if let Some(ts) = item["triggers"].as_array() {
            for tr in ts {
                let refs = referenced_keys(tr["expression"].as_str().unwrap(), name);
                assert!(refs.iter().all(|k| k == item["key"].as_str().unwrap()), "{tr}");
                triggers.push(tr);
            }
        }
    }
    // Every reply key has its dependent item.
    for key in [
        "status",
        "pending_backup",
        "backup_error",
        "pending_processing",
        "processing_error",
        "host_check_error",
        "host_files",
        "last_backup",
        "message",
        "status_query",
    ] {
        assert!(
            items.iter().any(|i| i["preprocessing"][0]["parameters"][0] == format!("$.{key}")),
            "no item for {key}"
        );
    }
    triggers.extend(export["triggers"].as_array().map(|v| v.iter().collect::<Vec<_>>()).unwrap_or_default());
    assert!(triggers.len() >= 6, "{} triggers", triggers.len());
    for tr in &triggers {
        uuids.push(&tr["uuid"]);
        let expr = tr["expression"].as_str().unwrap();
        let refs = referenced_keys(expr, name);
        assert!(!refs.is_empty(), "{expr}");
        for k in refs {
            assert!(keys.contains(&k.as_str()), "trigger {} references unknown item {k}", tr["name"]);
        }
        assert!(
            ["INFO", "WARNING", "AVERAGE", "HIGH", "DISASTER"].contains(&tr["priority"].as_str().unwrap()),
            "{tr}"
        );
    }
    let all: String =
        triggers.iter().map(|t| t["expression"].as_str().unwrap()).collect::<Vec<_>>().join("\n");
    for needle in
        ["halt flag alert", "host key", "authentication failed", "{$BACKUP_MAX_AGE}", "backup_error"]
    {
        assert!(all.contains(needle), "no trigger on {needle}");
    }

    // Macros: the password is a secret macro, and every macro used is defined.
    let macros = t["macros"].as_array().unwrap();
    let defined: Vec<&str> = macros.iter().map(|m| m["macro"].as_str().unwrap()).collect();
    for m in [
        "{$CATALOGA_SERVER}",
        "{$CATALOGA_TIMEOUT}",
        "{$SSH_USER}",
        "{$SSH_PASSWD}",
        "{$SSH_PORT}",
        "{$BACKUP_MAX_AGE}",
    ] {
        assert!(defined.contains(&m), "macro {m}");
    }
    let passwd = macros.iter().find(|m| m["macro"] == "{$SSH_PASSWD}").unwrap();
    assert_eq!(passwd["type"], "SECRET_TEXT");
    let text = serde_json::to_string(&doc).unwrap();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("{$") {
        let end = rest[i..].find('}').unwrap() + i + 1;
        assert!(defined.contains(&&rest[i..end]), "macro {} used but not defined", &rest[i..end]);
        rest = &rest[end..];
    }

    for v in t["valuemaps"].as_array().into_iter().flatten() {
        uuids.push(&v["uuid"]);
    }
    for g in export["template_groups"].as_array().unwrap() {
        uuids.push(&g["uuid"]);
    }
    for u in &uuids {
        assert!(is_uuid(u), "bad uuid {u}");
    }
    let mut unique: Vec<&str> = uuids.iter().map(|u| u.as_str().unwrap()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uuids.len(), "duplicate uuids");
}
