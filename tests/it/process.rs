//! The processing stage end to end: copied files (real RFeye fixtures, generated files, junk)
//! queued as processing tasks, a real MariaDB with the reference data, the real daemon.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use appcataloga::crfs::generator::{self, gps_fix};
use sha2::{Digest, Sha256};

use crate::support::*;

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Migrates the test schemas and loads the reference data; `None` (with a printed reason) when
/// `../shared` is absent.
fn prepared_db() -> Option<TestDb> {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared (reference data and fixtures) is absent");
        return None;
    };
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary())
        .args(["refdata", "load"])
        .arg(shared.join("reference-data"))
        .env("APPCATALOGA_CONFIG", empty_config(dir.path()))
        .envs(db.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(db)
}

/// Puts `bytes` in `<repo>/tmp/<uid>/<name>` and queues it as a copied file of `host_id`.
fn stage(db: &TestDb, repo: &Path, host_id: u32, uid: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = repo.join("tmp").join(uid);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    db.sql(&format!(
        "INSERT IGNORE INTO {{BP}}.HOST (ID_HOST, NA_HOST_UID) VALUES ({host_id}, '{uid}');
         INSERT INTO {{BP}}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NA_SERVER_FILE_PATH,
                NA_SERVER_FILE_NAME, NU_STATUS, VL_FILE_SIZE, NA_SHA256, DT_BACKUP)
         VALUES ({host_id}, NOW(6), 2, '/mnt/internal/data', '{name}', '{}', '{name}', 1, {}, '{}', NOW(6))",
        dir.display(),
        bytes.len(),
        sha(bytes)
    ));
    path
}

fn processing_daemon(db: &TestDb, repo: &Path) -> TestDaemon {
    TestDaemon::start(
        db,
        DaemonOptions {
            env: vec![
                ("APPCATALOGA_PROCESSING__POLL_INTERVAL".into(), "100ms".into()),
                ("APPCATALOGA_PROCESSING__RETRY_BASE".into(), "200ms".into()),
            ],
            processing: true,
            repo: Some(repo.to_path_buf()),
            ..Default::default()
        },
    )
}

fn settled(db: &TestDb) -> bool {
    db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE NU_TYPE = 2 AND NU_STATUS NOT IN (0, -1)") == "0"
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(shared_dir().unwrap().join("fixtures/crfs").join(name)).unwrap()
}

/// A generated file measured in Brasília by a receiver that was never seen before.
fn brasilia_file(seed: u64) -> Vec<u8> {
    let mut spec = generator::small_v5(seed);
    spec.hostname = "rfeye002999".into();
    let t = spec.gps[0].time;
    spec.gps = vec![
        gps_fix(t, 2, -15_779_500, -47_929_700, 1_100_000),
        gps_fix(t + chrono::TimeDelta::seconds(60), 2, -15_779_520, -47_929_710, 1_100_500),
    ];
    generator::generate(&spec).unwrap()
}

fn rfdata_counts(db: &TestDb) -> String {
    db.value(
        "SELECT CONCAT_WS(' ', (SELECT COUNT(*) FROM {RF}.FACT_SPECTRUM), (SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_FILE),
            (SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_SITE), (SELECT COUNT(*) FROM {RF}.BRIDGE_SPECTRUM_FILE),
            (SELECT COUNT(*) FROM {RF}.BRIDGE_SPECTRUM_EQUIPMENT), (SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_EQUIPMENT),
            (SELECT SUM(NU_GNSS_MEASUREMENTS) FROM {RF}.DIM_SPECTRUM_SITE))",
    )
}

#[test]
fn real_and_generated_files_are_catalogued_filed_and_reprocessing_adds_nothing() {
    let Some(db) = prepared_db() else { return };
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let uid = "RFEye002292";
    let names = [
        "rfeye002292_210211_T111912.bin",
        "rfeye002292_210211_T112336.bin",
        "rfeye002218_NenhumBlocoDeEspectro.bin",
    ];
    for n in names {
        stage(&db, &repo, 9100, uid, n, &fixture(n));
    }
    let generated = brasilia_file(1);
    stage(&db, &repo, 9101, "RFEye002999", "rfeye002999_new_site.bin", &generated);
    stage(&db, &repo, 9101, "RFEye002999", "notes.txt", b"this is not a CRFS file at all");
    let mut corrupt = generated.clone();
    corrupt.truncate(40);
    stage(&db, &repo, 9101, "RFEye002999", "corrupt.bin", &corrupt);
    let d = processing_daemon(&db, &repo);
    wait_for("processing", Duration::from_secs(60), || settled(&db));

    // T112336: two streams of 93 sweeps, 50–90 MHz and thread 30; Salvador (BA, 2927408).
    let rows = db.sql(
        "SELECT s.NU_THREAD_ID, s.NU_FREQ_START, s.NU_FREQ_END, s.DT_TIME_START, s.NU_TRACE_COUNT, s.NU_TRACE_LENGTH, u.NA_MEASURE_UNIT,
                s.NU_RBW, t.NA_TRACE_TYPE, st.LC_STATE, si.FK_COUNTY, s.NA_DESCRIPTION
         FROM {RF}.FACT_SPECTRUM s JOIN {RF}.BRIDGE_SPECTRUM_FILE b ON b.FK_SPECTRUM = s.ID_SPECTRUM
         JOIN {RF}.DIM_SPECTRUM_FILE f ON f.ID_FILE = b.FK_FILE AND f.NA_VOLUME = 'RFEye002292'
         JOIN {RF}.DIM_SPECTRUM_UNIT u ON u.ID_MEASURE_UNIT = s.FK_MEASURE_UNIT
         JOIN {RF}.DIM_SPECTRUM_TRACE_TYPE t ON t.ID_TRACE_TYPE = s.FK_TRACE_TYPE
         JOIN {RF}.DIM_SPECTRUM_SITE si ON si.ID_SITE = s.FK_SITE JOIN {RF}.DIM_SITE_STATE st ON st.ID_STATE = si.FK_STATE
         WHERE f.NA_FILE = 'rfeye002292_210211_T112336.bin' ORDER BY s.NU_THREAD_ID",
    );
    let lines: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{rows}");
    let t10 = &lines[0];
    assert_eq!(&t10[..3], ["10", "50.000000000", "90.000000000"]);
    // rfpye quirk 8.1 would give .248700; the true sub-second part is .002487.
    assert_eq!(t10[3], "2021-02-11 11:23:36.002487", "exact first sweep");
    assert_eq!(&t10[4..11], ["93", "1024", "dBm", "73828.0", "peak", "BA", "2927408"]);
    assert_eq!(t10[11], "PRD 2021 (Faixa principal 1 de 4).");

    // Per-file stream counts (one row per stream) and the equipment.
    let per_file = db.sql(
        "SELECT f.NA_FILE, COUNT(*) FROM {RF}.BRIDGE_SPECTRUM_FILE b JOIN {RF}.DIM_SPECTRUM_FILE f ON f.ID_FILE = b.FK_FILE
         WHERE f.NA_VOLUME <> 'repoSFI' GROUP BY f.NA_FILE ORDER BY f.NA_FILE",
    );
    assert_eq!(
        per_file.trim(),
        "rfeye002292_210211_T111912.bin\t4\nrfeye002292_210211_T112336.bin\t2\nrfeye002999_new_site.bin\t5",
        "the no-spectrum file has no spectrum rows"
    );
    let equipment = db.sql("SELECT NA_EQUIPMENT FROM {RF}.DIM_SPECTRUM_EQUIPMENT ORDER BY NA_EQUIPMENT");
    assert!(equipment.contains("rfeye002292\n") && equipment.contains("acc_ant[0]_002292"), "{equipment}");
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_EQUIPMENT WHERE NA_EQUIPMENT = 'rfeye002292' AND FK_EQUIPMENT_TYPE = 1"), "1");

    // Every catalogued file has a station copy and a repository copy, and sits at the path.
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_FILE WHERE NA_VOLUME = 'repoSFI'"), "4");
    for (name, state, county) in [
        ("rfeye002292_210211_T112336.bin", "BA", "2927408"),
        ("rfeye002292_210211_T111912.bin", "BA", "2927408"),
        ("rfeye002999_new_site.bin", "DF", "5300108"),
    ] {
        let site = db.value(&format!(
            "SELECT FK_SITE FROM {{RF}}.FACT_SPECTRUM s JOIN {{RF}}.BRIDGE_SPECTRUM_FILE b ON b.FK_SPECTRUM = s.ID_SPECTRUM
             JOIN {{RF}}.DIM_SPECTRUM_FILE f ON f.ID_FILE = b.FK_FILE WHERE f.NA_FILE = '{name}' LIMIT 1"
        ));
        let filed = repo.join("2021").join(state).join(county).join(&site).join(name);
        assert!(filed.exists(), "{name} filed at {}", filed.display());
        assert_eq!(
            db.value(&format!("SELECT CONCAT(NA_PATH, '/', NA_FILE) FROM {{RF}}.DIM_SPECTRUM_FILE WHERE NA_VOLUME = 'repoSFI' AND NA_FILE = '{name}'")),
            filed.display().to_string()
        );
        assert!(
            !repo
                .join("tmp")
                .join(if name.contains("2999") { "RFEye002999" } else { uid })
                .join(name)
                .exists()
        );
    }
    // The two Salvador files share one site (within 0.0005°), refined over their 6 fixes.
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_SITE WHERE FK_STATE = 29"), "1");
    // The brand-new site's first file succeeded (the original lost it).
    assert_eq!(
        db.value("SELECT NU_STATUS FROM {BP}.FILE_TASK WHERE NA_HOST_FILE_NAME = 'rfeye002999_new_site.bin'"),
        "0"
    );
    // The no-spectrum file is catalogued (file rows, site), not an error.
    assert_eq!(db.value("SELECT NU_STATUS FROM {BP}.FILE_TASK WHERE NA_HOST_FILE_NAME = 'rfeye002218_NenhumBlocoDeEspectro.bin'"), "0");

    // Junk: to trash with the reason, no RFDATA row.
    for junk in ["notes.txt", "corrupt.bin"] {
        let row = db.value(&format!(
            "SELECT CONCAT_WS('|', NU_STATUS, NA_SERVER_FILE_PATH, NA_MESSAGE) FROM {{BP}}.FILE_TASK WHERE NA_HOST_FILE_NAME = '{junk}'"
        ));
        let fields: Vec<&str> = row.split('|').collect();
        assert_eq!(fields[0], "-1", "{row}");
        assert_eq!(fields[1], repo.join("trash/RFEye002999").display().to_string());
        assert!(fields[2].starts_with("Error processing task:"), "{row}");
        assert!(repo.join("trash/RFEye002999").join(junk).exists());
        assert_eq!(
            db.value(&format!("SELECT COUNT(*) FROM {{RF}}.DIM_SPECTRUM_FILE WHERE NA_FILE = '{junk}'")),
            "0"
        );
    }
    let reply = reply_json(&legacy_query(d.addr, "status 9101"));
    assert_eq!(reply["processing_error"], 2);
    assert_ne!(reply["last_processing"], "N/A");

    // Process the same files again: no new rows, files stay where they are.
    let before = rfdata_counts(&db);
    let done = db.sql("SELECT ID_FILE_TASK, FK_HOST, NA_SERVER_FILE_PATH, NA_SERVER_FILE_NAME FROM {BP}.FILE_TASK WHERE NU_STATUS = 0");
    for line in done.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let uid = if f[1] == "9100" { "RFEye002292" } else { "RFEye002999" };
        let back = repo.join("tmp").join(uid);
        std::fs::copy(Path::new(f[2]).join(f[3]), back.join(f[3])).unwrap();
        db.sql(&format!(
            "UPDATE {{BP}}.FILE_TASK SET NU_STATUS = 1, NA_SERVER_FILE_PATH = '{}', NA_TARGET_PATH = NULL WHERE ID_FILE_TASK = {}",
            back.display(),
            f[0]
        ));
    }
    wait_for("reprocessing", Duration::from_secs(60), || settled(&db));
    assert_eq!(rfdata_counts(&db), before, "reprocessing adds no row and does not refine sites again");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE NU_TYPE = 2 AND NU_STATUS = 0"), "4");
}

#[test]
fn kill_nine_during_processing_catalogues_each_file_exactly_once() {
    let Some(db) = prepared_db() else { return };
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let mut expected_streams = 0;
    for i in 0..12u64 {
        let mut spec = generator::realistic_v5(1 << 20, 500 + i);
        spec.hostname = "rfeye002555".into();
        let bytes = generator::generate(&spec).unwrap();
        expected_streams += appcataloga::crfs::parse_metadata(&bytes).unwrap().spectra.len();
        stage(&db, &repo, 9200, "RFEye002555", &format!("f{i:02}.bin"), &bytes);
    }
    let mut seed = 99u64;
    for _ in 0..6 {
        let mut d = processing_daemon(&db, &repo);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        thread::sleep(Duration::from_millis(30 + (seed >> 33) % 400));
        let _ = d.child.kill();
        let _ = d.child.wait();
    }
    let _d = processing_daemon(&db, &repo);
    wait_for("processing after the kills", Duration::from_secs(120), || {
        db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE NU_TYPE = 2 AND NU_STATUS = 0") == "12"
    });
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.FACT_SPECTRUM"), expected_streams.to_string());
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_FILE"),
        "24",
        "a station and a repository row per file"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SPECTRUM_SITE"), "1");
    // Each file exactly once in the repository, none left in tmp.
    let mut found = Vec::new();
    let mut stack = vec![repo.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.path());
            }
        }
    }
    assert_eq!(found.len(), 12, "{found:?}");
    assert!(found.iter().all(|p| !p.starts_with(repo.join("tmp"))), "{found:?}");
}

#[test]
fn two_daemons_never_process_a_file_twice() {
    let Some(db) = prepared_db() else { return };
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    for i in 0..30u64 {
        let mut spec = generator::small_v5(700 + i);
        spec.hostname = "rfeye002777".into();
        stage(&db, &repo, 9300, "RFEye002777", &format!("g{i:02}.bin"), &generator::generate(&spec).unwrap());
    }
    let _d1 = processing_daemon(&db, &repo);
    let _d2 = processing_daemon(&db, &repo);
    wait_for("processing", Duration::from_secs(120), || {
        db.value("SELECT COUNT(*) FROM {BP}.FILE_TASK WHERE NU_TYPE = 2 AND NU_STATUS = 0") == "30"
    });
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE NA_TASK_KIND = 'FILE' AND NA_MESSAGE LIKE 'Processed:%'"),
        "30",
        "each file processed exactly once"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.FACT_SPECTRUM"), "150");
    let workers = db.value(
        "SELECT COUNT(DISTINCT NA_ACTOR) FROM {BP}.TASK_HISTORY WHERE NA_MESSAGE = 'Processing claimed'",
    );
    assert_eq!(workers, "2", "both daemons worked");
}

/// A one-route stand-in for a Nominatim server on loopback (the real one is an external web
/// service that tests here cannot reach).
fn fake_geocoder(answer: &'static str) -> (u16, thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = thread::spawn(move || {
        use std::io::{Read, Write};
        let mut served = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) && served == 0 {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).unwrap_or(0);
                    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /reverse?format=jsonv2"));
                    let body = answer;
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    served += 1;
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    });
    (port, handle)
}

#[test]
fn an_optional_geocoder_adds_the_district_and_its_absence_fails_nothing() {
    let Some(db) = prepared_db() else { return };
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let (port, geocoder) =
        fake_geocoder(r#"{"address":{"suburb":"Asa Sul","city":"Brasília","state":"Distrito Federal"}}"#);
    stage(&db, &repo, 9400, "RFEye002999", "with_district.bin", &brasilia_file(3));
    let d = TestDaemon::start(
        &db,
        DaemonOptions {
            env: vec![
                ("APPCATALOGA_PROCESSING__POLL_INTERVAL".into(), "100ms".into()),
                ("APPCATALOGA_PROCESSING__NOMINATIM_URL".into(), format!("http://127.0.0.1:{port}")),
            ],
            processing: true,
            repo: Some(repo.clone()),
            ..Default::default()
        },
    );
    wait_for("processing", Duration::from_secs(60), || settled(&db));
    assert_eq!(geocoder.join().unwrap(), 1, "asked once for the new site");
    assert_eq!(
        db.value("SELECT CONCAT(d.NA_DISTRICT, ' ', d.FK_COUNTY) FROM {RF}.DIM_SPECTRUM_SITE s JOIN {RF}.DIM_SITE_DISTRICT d ON d.ID_DISTRICT = s.FK_DISTRICT"),
        "Asa Sul 5300108",
        "{}\n{}",
        db.sql("SELECT * FROM {RF}.DIM_SITE_DISTRICT; SELECT ID_SITE, FK_DISTRICT, FK_COUNTY FROM {RF}.DIM_SPECTRUM_SITE"),
        d.log_text()
    );
    drop(d);

    // A geocoder that is down: the file is still catalogued, its site has no district.
    let Some(db2) = prepared_db() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    stage(&db2, &repo, 9401, "RFEye002999", "without_district.bin", &brasilia_file(4));
    let _d2 = TestDaemon::start(
        &db2,
        DaemonOptions {
            env: vec![
                ("APPCATALOGA_PROCESSING__POLL_INTERVAL".into(), "100ms".into()),
                ("APPCATALOGA_PROCESSING__NOMINATIM_URL".into(), format!("http://127.0.0.1:{closed}")),
            ],
            processing: true,
            repo: Some(repo.clone()),
            ..Default::default()
        },
    );
    wait_for("processing", Duration::from_secs(60), || settled(&db2));
    assert_eq!(
        db2.value("SELECT NU_STATUS FROM {BP}.FILE_TASK WHERE NA_HOST_FILE_NAME = 'without_district.bin'"),
        "0"
    );
    assert_eq!(db2.value("SELECT CONCAT(FK_STATE, ' ', FK_COUNTY, ' ', IFNULL(FK_DISTRICT, 'none')) FROM {RF}.DIM_SPECTRUM_SITE"), "53 5300108 none");
}
