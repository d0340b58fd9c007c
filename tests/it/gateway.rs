//! The Zabbix gateway against a real MariaDB, through the real daemon binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

fn backup_request(host_id: u32, password: &str) -> String {
    format!("backup {host_id} RFEye002080 rfeye002080.anatel.gov.br 2828 sshUser {password}")
}

#[test]
fn legacy_client_gets_every_key_in_order_and_the_task_is_queued() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let reply = legacy_query(d.addr, &backup_request(10367, "CANARY-legacy-4f1d"));
    assert!(reply.starts_with("<json>") && reply.ends_with("</json>"), "{reply}");
    assert!(reply.len() <= 1024);
    assert_eq!(keys_in_order(&reply), LEGACY_KEYS);
    let v = reply_json(&reply);
    assert_eq!(v["status"], 1);
    assert_eq!(v["host"], 10367);
    assert_eq!(v["pending_host_task"], 1);
    assert_eq!(v["last_backup"], "N/A", "a fresh host has no backup yet");
    assert!(v["host_files"].is_i64());

    // The HOST row and exactly one pending backup task.
    assert_eq!(
        db.value("SELECT CONCAT_WS('|', NA_HOST_UID, NA_HOST_ADDRESS, NA_HOST_PORT, NA_HOST_USER, IFNULL(NA_HOST_PASSWORD, 'NULL')) FROM {BP}.HOST WHERE ID_HOST = 10367"),
        "RFEye002080|rfeye002080.anatel.gov.br|2828|sshUser|NULL"
    );
    assert_eq!(
        db.value(
            "SELECT CONCAT_WS('|', NU_TYPE, NU_STATUS, NA_MESSAGE) FROM {BP}.HOST_TASK WHERE FK_HOST = 10367"
        ),
        "1|1|New task"
    );
    // Password stored sealed, never in clear.
    let sealed = db.value("SELECT HEX(BN_HOST_PASSWORD_SEALED) FROM {BP}.HOST WHERE ID_HOST = 10367");
    assert!(sealed.len() > 2 * (1 + 24 + 16), "sealed password stored: {sealed}");
    assert!(!sealed.contains(&hex_upper("CANARY")));
    let dump =
        db.sql("SELECT * FROM {BP}.HOST; SELECT * FROM {BP}.HOST_TASK; SELECT * FROM {BP}.TASK_HISTORY;");
    assert!(!dump.contains("CANARY"), "password in clear in the database");
    assert!(!d.log_text().contains("CANARY"), "password in the log");
    assert!(!reply.contains("CANARY"));

    // The JSON request form works too, case-insensitively.
    let json = r#"{"query_tag":"BACKUP","host_id":10806,"host_uid":"CWSM211009","host_add":"10.10.10.20","host_port":"2828","user":"celplan","passwd":"pw","filter":{"mode":"NONE"}}"#;
    let reply = legacy_query(d.addr, json);
    assert_eq!(keys_in_order(&reply), LEGACY_KEYS);
    assert_eq!(reply_json(&reply)["host"], 10806);
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE FK_HOST = 10806 AND NU_STATUS = 1"), "1");

    // status answers and queues nothing new; an unknown host is an error that says so.
    let reply = legacy_query(d.addr, "status 10367");
    assert_eq!(reply_json(&reply)["status"], 1);
    let reply = reply_json(&legacy_query(d.addr, "status 424242"));
    assert_eq!(reply["status"], 0);
    assert!(reply["message"].as_str().unwrap().contains("unknown"), "{reply}");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST"), "2");
}

fn hex_upper(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn a_hundred_polls_leave_one_pending_task_that_keeps_its_place() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let first = reply_json(&legacy_query(d.addr, &backup_request(500, "pw")));
    assert_eq!(first["status"], 1);
    let queued_at = db.value("SELECT DT_HOST_TASK FROM {BP}.HOST_TASK WHERE FK_HOST = 500");
    // 99 more polls, 11 at a time, racing each other.
    let addr = d.addr;
    for _ in 0..9 {
        let handles: Vec<_> = (0..11)
            .map(|_| thread::spawn(move || reply_json(&legacy_query(addr, &backup_request(500, "pw")))))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap()["status"], 1);
        }
    }
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE FK_HOST = 500"), "1");
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST_TASK WHERE FK_HOST = 500"), "1");
    assert_eq!(
        db.value("SELECT DT_HOST_TASK FROM {BP}.HOST_TASK WHERE FK_HOST = 500"),
        queued_at,
        "a poll must not push the host to the back of the queue"
    );
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE FK_HOST = 500"),
        "1",
        "one state change"
    );
    let sealed_once = db.value("SELECT HEX(BN_HOST_PASSWORD_SEALED) FROM {BP}.HOST WHERE ID_HOST = 500");
    // A new password is re-sealed; the same password is left alone.
    legacy_query(d.addr, &backup_request(500, "pw"));
    assert_eq!(
        db.value("SELECT HEX(BN_HOST_PASSWORD_SEALED) FROM {BP}.HOST WHERE ID_HOST = 500"),
        sealed_once
    );
    legacy_query(d.addr, &backup_request(500, "new password with spaces"));
    assert_ne!(
        db.value("SELECT HEX(BN_HOST_PASSWORD_SEALED) FROM {BP}.HOST WHERE ID_HOST = 500"),
        sealed_once
    );

    // A finished task is re-armed by the next poll, with a history row.
    db.sql("UPDATE {BP}.HOST_TASK SET NU_STATUS = 0 WHERE FK_HOST = 500");
    let v = reply_json(&legacy_query(d.addr, &backup_request(500, "pw")));
    assert_eq!(v["pending_host_task"], 1);
    assert_eq!(
        db.value("SELECT CONCAT(NU_STATUS, ' ', NA_MESSAGE) FROM {BP}.HOST_TASK WHERE FK_HOST = 500"),
        "1 Refreshed"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE FK_HOST = 500"), "2");
    // A running task is never reset by a poll.
    db.sql("UPDATE {BP}.HOST_TASK SET NU_STATUS = 2 WHERE FK_HOST = 500");
    let v = reply_json(&legacy_query(d.addr, &backup_request(500, "pw")));
    assert!(v["message"].as_str().unwrap().contains("running"), "{v}");
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST_TASK WHERE FK_HOST = 500"), "2");
}

#[test]
fn stop_suspends_pending_work_and_backup_resumes_it() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    legacy_query(d.addr, &backup_request(77, "pw"));
    db.sql(
        "INSERT INTO {BP}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS)
         VALUES (77, NOW(6), 1, '/mnt/internal/data', 'a.bin', 1), (77, NOW(6), 1, '/mnt/internal/data', 'b.bin', 1),
                (77, NOW(6), 2, '/mnt/internal/data', 'c.bin', 1)",
    );
    let v = reply_json(&legacy_query(d.addr, "stop 77"));
    assert_eq!(v["status"], 1, "{v}");
    assert_eq!(v["pending_host_task"], 0);
    assert_eq!(v["pending_backup"], 0);
    assert_eq!(v["pending_processing"], 1, "processing is not touched by stop");
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST_TASK WHERE FK_HOST = 77"), "-2");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE FK_HOST = 77 AND NU_STATUS = -2"), "2");
    let v = reply_json(&legacy_query(d.addr, &backup_request(77, "pw")));
    assert_eq!(v["pending_host_task"], 1);
    assert_eq!(v["pending_backup"], 2);
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE FK_HOST = 77 AND NA_TASK_KIND = 'FILE'"),
        "4",
        "each file suspension and resumption is in the history"
    );
    let v = reply_json(&legacy_query(d.addr, "STOP 99999"));
    assert_eq!(v["status"], 0);
}

#[test]
fn five_hundred_clients_at_once_are_all_answered() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let addr = d.addr;
    let barrier = Arc::new(Barrier::new(500));
    let started = Instant::now();
    let handles: Vec<_> = (0..500u32)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                // 100 distinct hosts, 5 clients each, racing on the same rows.
                let reply = legacy_query(addr, &backup_request(1000 + i % 100, "pw"));
                (i, reply)
            })
        })
        .collect();
    for h in handles {
        let (i, reply) = h.join().unwrap();
        let v = reply_json(&reply);
        assert_eq!(v["status"], 1, "client {i}: {reply}");
        assert_eq!(v["host"], 1000 + i % 100);
    }
    eprintln!("500 concurrent clients answered in {:?}", started.elapsed());
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK"), "100");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE NU_STATUS = 1"), "100");
}

/// What a bad client may get back: a status-0 reply, or a closed connection.
fn assert_refused_cleanly(what: &str, reply: &str) {
    if reply.is_empty() {
        return;
    }
    let v = reply_json(reply);
    assert_eq!(v["status"], 0, "{what}: {reply}");
    assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{what}: an error says what was wrong");
    assert!(reply.len() <= 1024, "{what}");
}

#[test]
fn bad_input_is_answered_cleanly_while_a_good_client_is_served() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    let addr = d.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let v = reply_json(&legacy_query(addr, &backup_request(1, "pw")));
                assert_eq!(v["status"], 1, "the good client must always be served");
                assert!(t.elapsed() < Duration::from_secs(1), "good client waited {:?}", t.elapsed());
                n += 1;
                thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };

    // Empty connection and port probe.
    drop(TcpStream::connect(addr).unwrap());
    let mut s = TcpStream::connect(addr).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert_refused_cleanly("empty connection", &r);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("1 MiB of garbage", (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect()),
        ("invalid UTF-8", b"backup \xff\xfe 1 2 3 4 5".to_vec()),
        ("NUL bytes", b"backup 1\0 u a 22 x y".to_vec()),
        ("3 tokens", b"backup 1 u".to_vec()),
        ("host_id not a number", b"backup abc u a 22 x y".to_vec()),
        ("host_id negative", b"backup -5 u a 22 x y".to_vec()),
        ("host_id huge", b"backup 99999999999999999999 u a 22 x y".to_vec()),
        ("unknown command", b"catalog 1 u a 22 x y".to_vec()),
        (
            "JSON with wrong types",
            br#"{"query_tag":"backup","host_id":{"x":1},"host_uid":[],"host_port":true}"#.to_vec(),
        ),
        ("JSON not an object", b"[1,2,3]".to_vec()),
        ("truncated JSON", br#"{"query_tag":"backup","#.to_vec()),
        ("port out of range", b"backup 1 u a 99999 x y".to_vec()),
    ];
    for (what, bytes) in &cases {
        let reply = query_bytes(addr, bytes);
        assert!(!reply.is_empty(), "{what}: expected an error reply");
        assert_refused_cleanly(what, &reply);
    }
    // 20 tokens: the password is the rest of the line (it may contain spaces): accepted.
    let twenty = "backup 2 u a 22 x p a s s w o r d w i t h s p";
    assert_eq!(twenty.split(' ').count(), 20);
    assert_eq!(reply_json(&query_bytes(addr, twenty.as_bytes()))["status"], 1);

    // A client sending 1 byte per second is closed within the request deadline.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let t = Instant::now();
    let mut reply = Vec::new();
    for b in b"backup 3 u a 22 x y" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    assert!(t.elapsed() < Duration::from_secs(6), "trickling client held {:?}", t.elapsed());
    assert_refused_cleanly("1 byte per second", &String::from_utf8_lossy(&reply));

    // SQL text as host uid: stored verbatim, tables intact.
    let evil = "x'; DROP TABLE HOST;--";
    let json = serde_json::json!({"query_tag": "backup", "host_id": 31337, "host_uid": evil,
        "host_add": "10.0.0.9", "host_port": 22, "user": "u", "passwd": "p"});
    let v = reply_json(&legacy_query(addr, &json.to_string()));
    assert_eq!(v["status"], 1, "{v}");
    assert_eq!(db.value("SELECT NA_HOST_UID FROM {BP}.HOST WHERE ID_HOST = 31337"), evil);
    let v = reply_json(&legacy_query(addr, "backup 31338 x';DROP/**/TABLE/**/HOST;-- a 22 u p"));
    assert_eq!(v["status"], 1, "{v}");
    assert_eq!(
        db.value("SELECT NA_HOST_UID FROM {BP}.HOST WHERE ID_HOST = 31338"),
        "x';DROP/**/TABLE/**/HOST;--"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{BP}' AND TABLE_NAME = 'HOST'"), "1");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = good.join().unwrap();
    assert!(served > 5, "the good client was served {served} times");
    // Still alive and well.
    assert_eq!(reply_json(&legacy_query(addr, &backup_request(1, "pw")))["status"], 1);
}

#[test]
fn excess_connections_are_refused_fast_and_strangers_are_not_served() {
    let db = TestDb::new();
    let d = TestDaemon::start(
        &db,
        DaemonOptions {
            env: vec![("APPCATALOGA_GATEWAY__MAX_CONNECTIONS".into(), "4".into())],
            with_key: true,
            ..Default::default()
        },
    );
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(d.addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let reply = query_bytes(d.addr, b"");
    assert!(t.elapsed() < Duration::from_millis(500), "refusal took {:?}", t.elapsed());
    let v = reply_json(&reply);
    assert_eq!(v["status"], 0);
    assert!(v["message"].as_str().unwrap().contains("busy"), "{v}");
    drop(silent);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(reply_json(&legacy_query(d.addr, &backup_request(5, "pw")))["status"], 1);

    let db2 = TestDb::new();
    let d2 = TestDaemon::start(
        &db2,
        DaemonOptions {
            env: vec![("APPCATALOGA_GATEWAY__ALLOW".into(), "[\"10.0.0.0/8\"]".into())],
            with_key: true,
            ..Default::default()
        },
    );
    let v = reply_json(&query_bytes(d2.addr, backup_request(5, "pw").as_bytes()));
    assert_eq!(v["status"], 0);
    assert!(v["message"].as_str().unwrap().contains("not allowed"), "{v}");
    assert_eq!(db2.value("SELECT COUNT(*) FROM {BP}.HOST"), "0");
}

#[test]
fn without_a_key_the_password_is_not_stored_and_the_reply_says_so() {
    let db = TestDb::new();
    let d = TestDaemon::start(&db, DaemonOptions::default());
    let v = reply_json(&legacy_query(d.addr, &backup_request(8, "CANARY-nokey-77aa")));
    assert_eq!(v["status"], 1);
    assert!(v["message"].as_str().unwrap().contains("password not stored"), "{v}");
    assert_eq!(
        db.value("SELECT IFNULL(HEX(BN_HOST_PASSWORD_SEALED), 'NULL') FROM {BP}.HOST WHERE ID_HOST = 8"),
        "NULL"
    );
    assert_eq!(db.value("SELECT IFNULL(NA_HOST_PASSWORD, 'NULL') FROM {BP}.HOST WHERE ID_HOST = 8"), "NULL");
    assert!(!d.log_text().contains("CANARY"));
}

#[test]
fn database_down_gives_status_zero_fast_and_recovery_needs_no_restart() {
    static OWN: std::sync::OnceLock<MariaDb> = std::sync::OnceLock::new();
    let server = OWN.get_or_init(MariaDb::start);
    let db = TestDb::on(server);
    let d = TestDaemon::start(&db, DaemonOptions { with_key: true, ..Default::default() });
    assert_eq!(reply_json(&legacy_query(d.addr, &backup_request(9, "pw")))["status"], 1);
    server.stop();
    for _ in 0..3 {
        let t = Instant::now();
        let reply = legacy_query(d.addr, &backup_request(9, "pw"));
        let elapsed = t.elapsed();
        let v = reply_json(&reply);
        assert_eq!(v["status"], 0, "{reply}");
        assert!(v["message"].as_str().unwrap().contains("database"), "{v}");
        assert!(elapsed < Duration::from_secs(1), "status-0 reply took {elapsed:?}");
    }
    server.restart();
    let t = Instant::now();
    loop {
        let v = reply_json(&legacy_query(d.addr, &backup_request(9, "pw")));
        if v["status"] == 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "no recovery after the database came back: {v}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_with_a_hundred_clients_connected_answers_them_all_and_exits_zero() {
    let db = TestDb::new();
    let mut d = TestDaemon::start(
        &db,
        DaemonOptions {
            env: vec![
                ("WATCHDOG_USEC".into(), "400000".into()),
                // Generous, so a loaded machine cannot turn the half-sent requests into complete ones.
                ("APPCATALOGA_GATEWAY__IDLE_GAP".into(), "3s".into()),
            ],
            with_key: true,
            ..Default::default()
        },
    );
    d.wait_notification("WATCHDOG=1");
    // 100 clients: each has sent the first half of its request when SIGTERM arrives.
    let mut clients: Vec<(TcpStream, String)> = (0..100u32)
        .map(|i| {
            let req = backup_request(2000 + i, "pw");
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(&req.as_bytes()[..10]).unwrap();
            (s, req)
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    d.terminate();
    thread::sleep(Duration::from_millis(50));
    for (s, req) in &mut clients {
        s.write_all(&req.as_bytes()[10..]).unwrap();
    }
    for (i, (s, _)) in clients.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply_json(&reply)["status"], 1, "client {i}: {reply}");
    }
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "log:\n{}", d.log_text());
    d.wait_notification("STOPPING=1");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST_TASK WHERE NU_STATUS = 1"), "100");
}
