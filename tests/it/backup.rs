//! The backup engine end to end: real OpenSSH stations (sshd on loopback, chrooted SFTP, the
//! station indexer), real MariaDB, the real daemon binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use appcataloga::station::{Station, StationSpec};
use sha2::{Digest, Sha256};

use crate::support::*;

fn station(name: &str) -> Station {
    let spec = StationSpec::new(name).with_password(Some(format!("CANARY-{name}-pw {}", std::process::id())));
    Station::start(spec).unwrap_or_else(|e| panic!("station {name}: {e}"))
}

fn poll(d: &TestDaemon, host_id: u32, uid: &str, st: &Station) -> serde_json::Value {
    let req = format!("backup {host_id} {uid} 127.0.0.1 {} {} {}", st.port(), st.user(), st.password());
    reply_json(&legacy_query(d.addr, &req))
}

fn backup_daemon(db: &TestDb, repo: &Path, key: Option<&Path>, extra: &[(&str, &str)]) -> TestDaemon {
    let mut env = fast_backup_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestDaemon::start(
        db,
        DaemonOptions {
            env,
            with_key: true,
            backup: true,
            repo: Some(repo.to_path_buf()),
            key_file: key.map(Path::to_path_buf),
            ..Default::default()
        },
    )
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn task_status(db: &TestDb, host_id: u32) -> String {
    db.value(&format!(
        "SELECT IFNULL(MAX(NU_STATUS), 'none') FROM {{BP}}.HOST_TASK WHERE FK_HOST = {host_id}"
    ))
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every regular file under `dir`, relative path → content hash (temporary files included, so
/// a leftover shows up).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, sha(&std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("station.key");
    if !path.exists() {
        assert!(
            std::process::Command::new(binary()).arg("keygen").arg(&path).output().unwrap().status.success()
        );
    }
    path
}

/// Files placed on a station: in-station path → bytes' hash.
fn populate(st: &Station, n_random: usize, seed: u64) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    if let Some(shared) = shared_dir() {
        for name in [
            "rfeye002292_210211_T111912.bin",
            "rfeye002292_210211_T112336.bin",
            "rfeye002218_NenhumBlocoDeEspectro.bin",
        ] {
            let bytes = std::fs::read(shared.join("fixtures/crfs").join(name)).unwrap();
            let path = st.add_file(name, &bytes).unwrap();
            files.insert(path, sha(&bytes));
        }
    }
    for i in 0..n_random {
        let len = [0u64, 1, 4095, 65_536, 300_000, 1 << 20][i % 6] + i as u64;
        let rel = if i % 5 == 4 { format!("sub/dir{i}/file{i}.bin") } else { format!("file{i}.bin") };
        let path = st.add_random_file(&rel, len, seed + i as u64).unwrap();
        files.insert(path.clone(), sha(&st.read(&path).unwrap().unwrap()));
    }
    files
}

fn repo_files(repo: &Path, uid: &str) -> BTreeMap<String, String> {
    tree(&repo.join("tmp").join(uid))
}

#[test]
fn three_stations_are_backed_up_completely_once_and_verifiably() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let d = backup_daemon(&db, &repo, None, &[]);
    let stations: Vec<(u32, String, Station, BTreeMap<String, String>)> = (0..3u32)
        .map(|i| {
            let st = station(&format!("s3x20-{i}"));
            let files = populate(&st, 17, u64::from(i) * 100);
            // Same name in two folders, different content: both must be kept.
            let dup_a = st.add_file("dup.bin", format!("first {i}").as_bytes()).unwrap();
            let dup_b = st.add_file("other/dup.bin", format!("second {i}").as_bytes()).unwrap();
            let mut files = files;
            files.insert(dup_a.clone(), sha(&st.read(&dup_a).unwrap().unwrap()));
            files.insert(dup_b.clone(), sha(&st.read(&dup_b).unwrap().unwrap()));
            st.run_indexer().unwrap();
            (7000 + i, format!("RFEye00700{i}"), st, files)
        })
        .collect();
    for (id, uid, st, _) in &stations {
        assert_eq!(poll(&d, *id, uid, st)["status"], 1);
    }
    for (id, _, _, _) in &stations {
        wait_for("backups to finish", Duration::from_secs(120), || task_status(&db, *id) == "0");
    }
    for (id, uid, st, files) in &stations {
        let n = files.len();
        assert!(n >= 19, "station has {n} files");
        let copied = repo_files(&repo, uid);
        assert_eq!(copied.len(), n, "{uid}: {copied:#?}");
        let mut want: Vec<&String> = files.values().collect();
        let mut got: Vec<&String> = copied.values().collect();
        want.sort();
        got.sort();
        assert_eq!(want, got, "byte-identical copies");
        assert_eq!(
            db.value(&format!("SELECT COUNT(*) FROM {{BP}}.FILE_TASK WHERE FK_HOST = {id} AND NU_TYPE = 2 AND NU_STATUS = 1 AND NA_SHA256 IS NOT NULL")),
            n.to_string()
        );
        let hashes = db
            .sql(&format!("SELECT NA_SHA256 FROM {{BP}}.FILE_TASK WHERE FK_HOST = {id} ORDER BY NA_SHA256"));
        let mut db_hashes: Vec<&str> = hashes.lines().collect();
        db_hashes.sort();
        let mut w: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        w.sort();
        assert_eq!(db_hashes, w);
        assert!(st.due_backup().unwrap().is_none(), "DUE_BACKUP removed");
        assert!(!st.halt_flag_exists(), "HALT_FLAG lowered");
        let done = String::from_utf8(st.backup_done().unwrap().unwrap_or_default()).unwrap();
        let mut listed: Vec<&str> = done.lines().collect();
        listed.sort();
        let mut paths: Vec<&str> = files.keys().map(|s| s.as_str()).collect();
        paths.sort();
        assert_eq!(listed, paths, "BACKUP_DONE lists every copied file");
        let collision = db.value(&format!(
            "SELECT COUNT(*) FROM {{BP}}.FILE_TASK WHERE FK_HOST = {id} AND NA_ERROR_CODE = 'NAME_COLLISION'"
        ));
        assert_eq!(collision, "1", "the second dup.bin is flagged");
        let reply = reply_json(&legacy_query(d.addr, &format!("status {id}")));
        assert_eq!(reply["host_files"], n as u64);
        assert_ne!(reply["last_backup"], "N/A");
    }
    // A second poll copies nothing again.
    for (id, uid, st, _) in &stations {
        st.run_indexer().unwrap();
        poll(&d, *id, uid, st);
    }
    for (id, _, _, _) in &stations {
        wait_for("second backups", Duration::from_secs(60), || {
            task_status(&db, *id) == "0"
                && db.value(&format!("SELECT COUNT(*) FROM {{BP}}.TASK_HISTORY WHERE FK_HOST = {id} AND NA_TASK_KIND = 'HOST' AND NU_STATUS_TO = 0")) == "2"
        });
        assert!(
            db.value(&format!("SELECT NA_MESSAGE FROM {{BP}}.HOST_TASK WHERE FK_HOST = {id}"))
                .contains(" 0 copied")
        );
    }
    for (_, uid, _, files) in &stations {
        assert_eq!(repo_files(&repo, uid).len(), files.len());
    }
    // Canary passwords: never in logs, replies or plain columns.
    assert!(!d.log_text().contains("CANARY"), "password in the daemon log");
    let dump = db.sql("SELECT * FROM {BP}.HOST; SELECT * FROM {BP}.HOST_TASK; SELECT * FROM {BP}.FILE_TASK; SELECT * FROM {BP}.TASK_HISTORY;");
    assert!(!dump.contains("CANARY"), "password in clear in the database");
}

#[test]
fn halt_flag_held_briefly_waits_and_held_too_long_alerts_without_touching_anything() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let d = backup_daemon(&db, &repo, None, &[]);

    let brief = station("flag-brief");
    brief.add_random_file("a.bin", 1000, 1).unwrap();
    brief.run_indexer().unwrap();
    brief.hold_halt_flag().unwrap();
    poll(&d, 7101, "RFEye007101", &brief);
    thread::sleep(Duration::from_millis(800));
    assert_eq!(task_status(&db, 7101), "2", "waiting while the station holds the flag");
    brief.release_halt_flag().unwrap();
    wait_for("the brief-flag backup", Duration::from_secs(30), || task_status(&db, 7101) == "0");
    assert_eq!(repo_files(&repo, "RFEye007101").len(), 1);

    let stuck = station("flag-stuck");
    stuck.add_random_file("b.bin", 1000, 2).unwrap();
    stuck.run_indexer().unwrap();
    let index_before = stuck.due_backup().unwrap();
    stuck.hold_halt_flag().unwrap();
    poll(&d, 7102, "RFEye007102", &stuck);
    wait_for("the halt flag alert", Duration::from_secs(30), || task_status(&db, 7102) == "-1");
    assert_eq!(
        db.value("SELECT NU_STATUS FROM {BP}.HOST WHERE ID_HOST = 7102"),
        "2",
        "halt flag alert condition"
    );
    let reply = poll(&d, 7102, "RFEye007102", &stuck);
    assert!(reply["message"].as_str().unwrap().contains("halt flag alert"), "{reply}");
    assert!(stuck.halt_flag_exists(), "the station's flag is left alone");
    assert_eq!(
        stuck.read(&stuck.indexer_config().halt_flag).unwrap().unwrap(),
        b"",
        "flag content untouched"
    );
    assert_eq!(stuck.due_backup().unwrap(), index_before, "the index is untouched");
    assert!(repo_files(&repo, "RFEye007102").is_empty(), "nothing copied");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE FK_HOST = 7102"), "0");
}

#[test]
fn hostile_index_entries_are_refused_with_reasons_and_nothing_escapes() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let d = backup_daemon(&db, &repo, None, &[]);
    let st = station("hostile");
    let good = st.add_random_file("good.bin", 5000, 3).unwrap();
    st.add_symlink("/etc/node/indexerD.cfg", "/mnt/internal/data/escape.bin").unwrap();
    let data = "/mnt/internal/data";
    let mut index = Vec::new();
    for line in [
        format!("{data}\0/good.bin\0"),
        "../../etc/passwd".into(),
        "/etc/passwd".into(),
        format!("{data}/../../etc/node/indexerD.cfg"),
        format!("{data}\0/escape.bin\0"),
        format!("{data}/missing.bin"),
    ] {
        index.extend_from_slice(line.as_bytes());
        index.push(b'\n');
    }
    // 10 MB of junk lines.
    let mut seed = 7u64;
    while index.len() < 10 << 20 {
        let len = 20 + (seed % 150) as usize;
        for _ in 0..len {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let b = (seed >> 33) as u8;
            index.push(if b == b'\n' { b'x' } else { b });
        }
        index.push(b'\n');
    }
    st.write_due_backup_raw(&index).unwrap();
    poll(&d, 7201, "RFEye007201", &st);
    wait_for("the hostile backup", Duration::from_secs(120), || task_status(&db, 7201) == "0");
    let copied = repo_files(&repo, "RFEye007201");
    assert_eq!(copied.len(), 1, "only the good file: {copied:?}");
    assert_eq!(copied.values().next(), Some(&sha(&st.read(&good).unwrap().unwrap())));
    let reasons =
        db.sql("SELECT NA_MESSAGE FROM {BP}.FILE_TASK WHERE FK_HOST = 7201 AND NA_ERROR_CODE = 'REJECTED'");
    assert!(reasons.contains("'..'"), "{}", &reasons[..reasons.len().min(2000)]);
    assert!(reasons.contains("outside the station data folder"));
    assert!(reasons.contains("symbolic link"), "symlink escape refused");
    let vanished =
        db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE FK_HOST = 7201 AND NA_ERROR_CODE = 'VANISHED'");
    assert_eq!(vanished, "1");
    // Nothing was written outside the repository's host folder.
    let all = tree(&repo);
    assert!(all.keys().all(|k| k.starts_with("tmp/RFEye007201/")), "{all:?}");
    assert!(!st.halt_flag_exists());
}

#[test]
fn vanished_files_are_recorded_and_growing_files_are_retried_until_stable() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let d = backup_daemon(&db, &repo, None, &[]);
    let st = station("grow");
    st.add_random_file("keep.bin", 10_000, 4).unwrap();
    let gone = st.add_random_file("gone.bin", 10_000, 5).unwrap();
    let growing = st.add_random_file("growing.bin", 40 << 20, 6).unwrap();
    st.run_indexer().unwrap();
    std::fs::remove_file(st.path(&gone)).unwrap();
    // Append to the file while the backup runs.
    let path = st.path(&growing);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&[7u8; 4096]).unwrap();
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    poll(&d, 7301, "RFEye007301", &st);
    wait_for("the first pass", Duration::from_secs(60), || task_status(&db, 7301) == "0");
    assert_eq!(
        db.value("SELECT CONCAT(NU_TYPE, ' ', NU_STATUS, ' ', NA_ERROR_CODE) FROM {BP}.FILE_TASK WHERE FK_HOST = 7301 AND NA_HOST_FILE_NAME = 'growing.bin'"),
        "1 -1 CHANGED",
        "a file that changed during the copy is not catalogued as complete"
    );
    assert!(!repo_files(&repo, "RFEye007301").keys().any(|k| k.contains("growing")));
    assert_eq!(
        db.value(
            "SELECT NA_ERROR_CODE FROM {BP}.FILE_TASK WHERE FK_HOST = 7301 AND NA_HOST_FILE_NAME = 'gone.bin'"
        ),
        "VANISHED"
    );
    assert!(
        db.value(
            "SELECT NA_MESSAGE FROM {BP}.FILE_TASK WHERE FK_HOST = 7301 AND NA_HOST_FILE_NAME = 'gone.bin'"
        )
        .contains("not found in remote host")
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    thread::sleep(Duration::from_millis(400)); // past the retry backoff
    poll(&d, 7301, "RFEye007301", &st);
    wait_for("the retry", Duration::from_secs(60), || {
        db.value(
            "SELECT NU_TYPE FROM {BP}.FILE_TASK WHERE FK_HOST = 7301 AND NA_HOST_FILE_NAME = 'growing.bin'",
        ) == "2"
    });
    let copied = repo_files(&repo, "RFEye007301");
    assert_eq!(
        copied.get("growing.bin"),
        Some(&sha(&st.read(&growing).unwrap().unwrap())),
        "complete and correct"
    );
}

#[test]
fn sshd_killed_mid_transfer_leaves_no_partial_file_and_the_task_completes_later() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    // A dead peer is noticed by the I/O timeout (no traffic for this long).
    let d = backup_daemon(&db, &repo, None, &[("APPCATALOGA_BACKUP__IO_TIMEOUT", "4s")]);
    let mut st = station("killsshd");
    let big = st.add_random_file("big.bin", 400 << 20, 8).unwrap();
    st.run_indexer().unwrap();
    poll(&d, 7401, "RFEye007401", &st);
    let dir = repo.join("tmp/RFEye007401");
    wait_for("the transfer to start", Duration::from_secs(60), || {
        std::fs::read_dir(&dir)
            .map(|mut r| r.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".partial")))
            .unwrap_or(false)
    });
    st.kill();
    let t = Instant::now();
    while task_status(&db, 7401) != "1" {
        assert!(t.elapsed() < Duration::from_secs(60), "no failure recorded; daemon log:\n{}", d.log_text());
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.join("big.bin").exists(), "no partial file at the final name");
    assert!(tree(&dir).keys().all(|k| !k.ends_with(".partial")), "temporary file removed");
    st.start_again().unwrap();
    wait_for("the retry to complete", Duration::from_secs(120), || task_status(&db, 7401) == "0");
    assert_eq!(repo_files(&repo, "RFEye007401").get("big.bin"), Some(&sha(&st.read(&big).unwrap().unwrap())));
}

#[test]
fn wrong_host_key_is_refused_before_authentication_and_wrong_password_does_not_loop() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let d = backup_daemon(&db, &repo, None, &[]);
    let mut st = station("hostkey");
    st.add_random_file("a.bin", 100, 9).unwrap();
    st.run_indexer().unwrap();
    poll(&d, 7501, "RFEye007501", &st);
    wait_for("the first backup", Duration::from_secs(30), || task_status(&db, 7501) == "0");
    assert_eq!(
        db.value("SELECT NA_HOST_KEY_FINGERPRINT FROM {BP}.HOST WHERE ID_HOST = 7501"),
        st.host_key_fingerprint().unwrap(),
        "pinned on first contact"
    );
    st.restart_with_new_host_key().unwrap();
    st.add_random_file("b.bin", 100, 10).unwrap();
    st.run_indexer().unwrap();
    poll(&d, 7501, "RFEye007501", &st);
    wait_for("the refusal", Duration::from_secs(30), || task_status(&db, 7501) == "-3");
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST WHERE ID_HOST = 7501"), "3");
    assert_eq!(st.auth_attempts(), 0, "no authentication attempt reached the impostor:\n{}", st.sshd_log());
    let reply = poll(&d, 7501, "RFEye007501", &st);
    assert!(reply["message"].as_str().unwrap().contains("host key"), "{reply}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(task_status(&db, 7501), "-3", "frozen: no retry until an operator re-trusts the key");
    // The operator checks the new key and re-trusts it.
    let out = std::process::Command::new(binary())
        .args(["hosts", "trust-key", "7501"])
        .env("APPCATALOGA_CONFIG", empty_config(work.path()))
        .envs(db.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the backup after re-trust", Duration::from_secs(30), || task_status(&db, 7501) == "0");
    assert_eq!(
        db.value("SELECT NA_HOST_KEY_FINGERPRINT FROM {BP}.HOST WHERE ID_HOST = 7501"),
        st.host_key_fingerprint().unwrap()
    );
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST WHERE ID_HOST = 7501"), "0");

    let st2 = station("badpw");
    st2.add_random_file("a.bin", 100, 11).unwrap();
    st2.run_indexer().unwrap();
    let req = format!("backup 7502 RFEye007502 127.0.0.1 {} {} wrong-password", st2.port(), st2.user());
    legacy_query(d.addr, &req);
    wait_for("the auth failure", Duration::from_secs(30), || task_status(&db, 7502) == "-1");
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.HOST WHERE ID_HOST = 7502"), "4");
    let attempts = st2.auth_attempts();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(st2.auth_attempts(), attempts, "no retry loop after an authentication failure");
    assert!(!st2.halt_flag_exists());
    // New credentials from Zabbix are tried promptly.
    poll(&d, 7502, "RFEye007502", &st2);
    wait_for("the backup with the right password", Duration::from_secs(30), || task_status(&db, 7502) == "0");
}

#[test]
fn sigterm_mid_backup_lowers_flags_and_exits_zero_and_the_work_resumes() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let key = key_file(work.path());
    let mut d = backup_daemon(&db, &repo, Some(&key), &[]);
    let st = station("sigterm");
    let big = st.add_random_file("big.bin", 400 << 20, 12).unwrap();
    st.run_indexer().unwrap();
    poll(&d, 7601, "RFEye007601", &st);
    let dir = repo.join("tmp/RFEye007601");
    wait_for("the transfer to start", Duration::from_secs(60), || {
        std::fs::read_dir(&dir)
            .map(|mut r| r.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".partial")))
            .unwrap_or(false)
    });
    d.terminate();
    assert_eq!(d.wait_exit(Duration::from_secs(30)), Some(0), "{}", d.log_text());
    assert!(!st.halt_flag_exists(), "flag lowered at shutdown");
    assert_eq!(task_status(&db, 7601), "1", "released, not failed");
    assert!(tree(&dir).is_empty(), "no partial or final file left: {:?}", tree(&dir));
    let d2 = backup_daemon(&db, &repo, Some(&key), &[]);
    wait_for("the resumed backup", Duration::from_secs(120), || task_status(&db, 7601) == "0");
    assert_eq!(repo_files(&repo, "RFEye007601").get("big.bin"), Some(&sha(&st.read(&big).unwrap().unwrap())));
    drop(d2);
}

#[test]
fn kill_nine_at_random_moments_never_loses_or_duplicates_a_file() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let key = key_file(work.path());
    let st = station("kill9");
    let mut files = BTreeMap::new();
    for i in 0..20u64 {
        let p = st.add_random_file(&format!("f{i:02}.bin"), (2 << 20) + i * 1000, 100 + i).unwrap();
        files.insert(p.clone(), sha(&st.read(&p).unwrap().unwrap()));
    }
    st.run_indexer().unwrap();
    let mut seed = 12345u64;
    for cycle in 0..20 {
        let mut d = backup_daemon(&db, &repo, Some(&key), &[]);
        if cycle == 0 {
            poll(&d, 7701, "RFEye007701", &st);
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        thread::sleep(Duration::from_millis(50 + (seed >> 33) % 600));
        let _ = d.child.kill();
        let _ = d.child.wait();
    }
    let d = backup_daemon(&db, &repo, Some(&key), &[]);
    poll(&d, 7701, "RFEye007701", &st);
    wait_for("the backup after 20 kills", Duration::from_secs(120), || task_status(&db, 7701) == "0");
    let copied = repo_files(&repo, "RFEye007701");
    let mut want: Vec<&String> = files.values().collect();
    want.sort();
    let mut got: Vec<&String> = copied.values().collect();
    got.sort();
    assert_eq!(got, want, "every file exactly once, nothing partial: {copied:?}");
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE FK_HOST = 7701 AND NU_TYPE = 2"),
        "20",
        "one row per file"
    );
    assert!(!st.halt_flag_exists(), "no flag left");
}

#[test]
fn two_daemons_on_one_database_copy_each_file_exactly_once() {
    let db = TestDb::new();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let key = key_file(work.path());
    let d1 = backup_daemon(&db, &repo, Some(&key), &[("APPCATALOGA_BACKUP__MAX_PARALLEL_HOSTS", "3")]);
    let d2 = backup_daemon(&db, &repo, Some(&key), &[("APPCATALOGA_BACKUP__MAX_PARALLEL_HOSTS", "3")]);
    let stations: Vec<Station> = (0..10)
        .map(|i| {
            let st = station(&format!("pair-{i}"));
            for f in 0..5u64 {
                st.add_random_file(&format!("f{f}.bin"), 200_000 + f, i * 10 + f).unwrap();
            }
            st.run_indexer().unwrap();
            st
        })
        .collect();
    for (i, st) in stations.iter().enumerate() {
        let d = if i % 2 == 0 { &d1 } else { &d2 };
        poll(d, 7800 + i as u32, &format!("RFEye0078{i:02}"), st);
    }
    for i in 0..10u32 {
        wait_for("all backups", Duration::from_secs(120), || task_status(&db, 7800 + i) == "0");
    }
    for i in 0..10 {
        assert_eq!(repo_files(&repo, &format!("RFEye0078{i:02}")).len(), 5);
    }
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE NA_TASK_KIND = 'FILE' AND NA_MESSAGE LIKE 'File %copied to%'"),
        "50",
        "each file copied exactly once"
    );
    let owners = db.value("SELECT COUNT(DISTINCT NA_ACTOR) FROM {BP}.TASK_HISTORY WHERE NA_TASK_KIND = 'HOST' AND NU_STATUS_TO = 2");
    assert_eq!(owners, "2", "both daemons took work");
}
