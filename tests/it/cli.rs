//! The command line: configuration errors, `config check`, `migrate`, `refdata load`, `keygen`.

use std::process::Command;

use crate::support::*;

fn run(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APPCATALOGA_CONFIG", empty_config(dir.path()))
        .env("APPCATALOGA_LOG__FORMAT", "text");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn missing_database_url_is_one_line_naming_the_key_and_both_ways_to_set_it() {
    for sub in [&["run"][..], &["migrate"], &["config", "check"]] {
        let out = run(sub, &[]);
        assert!(!out.status.success(), "{sub:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains("database.url"), "{err}");
        assert!(err.contains("APPCATALOGA_DATABASE__URL"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }
}

#[test]
fn invalid_values_name_the_key() {
    let url = ("APPCATALOGA_DATABASE__URL", "mysql://u:CANARY-dbpw@127.0.0.1:1/".to_string());
    let cases = [
        ("APPCATALOGA_GATEWAY__LISTEN", "not-an-address", "gateway.listen"),
        ("APPCATALOGA_GATEWAY__REQUEST_TIMEOUT", "5 parsecs", "gateway.request_timeout"),
        ("APPCATALOGA_DATABASE__BPDATA_SCHEMA", "BP`; DROP", "database.bpdata_schema"),
        ("APPCATALOGA_GATEWAY__ALLOW", "[\"300.1.1.1/8\"]", "gateway.allow"),
    ];
    for (var, value, key) in cases {
        let out = run(&["config", "check"], &[url.clone(), (var, value.to_string())]);
        assert!(!out.status.success(), "{var}={value} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{var}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
    // A file that does not exist when named explicitly is an error too.
    let out = run(&["--config", "/nonexistent/appcataloga.toml", "config", "check"], &[url]);
    assert!(!out.status.success());
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(
        &file,
        "[gateway]\nlisten = \"127.0.0.1:7000\"\nallow = [\"10.0.0.0/8\"]\n[database]\nurl = \"mysql://app:CANARY-file@db/\"\n",
    )
    .unwrap();
    let out = run(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[("APPCATALOGA_GATEWAY__LISTEN", "127.0.0.1:7001".into())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:7001"), "environment overrides the file: {text}");
    assert!(text.contains("10.0.0.0/8"), "{text}");
    assert!(text.contains("mysql://app:*****@db/"), "{text}");
    assert!(!text.contains("CANARY") && !String::from_utf8_lossy(&out.stderr).contains("CANARY"));
    let parsed: toml::Value = toml::from_str(&text).expect("config check prints TOML");
    assert_eq!(parsed["database"]["bpdata_schema"].as_str(), Some("BPDATA"));
}

#[test]
fn the_documented_example_config_is_valid_and_complete() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/appcataloga.toml");
    let text = std::fs::read_to_string(example).unwrap();
    // Every key is documented (commented out with its default) in the example.
    let out = run(&["config", "check"], &[("APPCATALOGA_DATABASE__URL", "mysql://u@h/".into())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let effective: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    for (section, table) in effective.as_table().unwrap() {
        assert!(text.contains(&format!("[{section}]")), "section [{section}] is not documented");
        for key in table.as_table().unwrap().keys() {
            assert!(text.contains(&format!("{key} =")), "{section}.{key} is not documented");
        }
    }
    // Uncommented, the example parses as a configuration.
    let uncommented: String = text
        .lines()
        .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ")).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.toml");
    std::fs::write(&file, uncommented).unwrap();
    let out = run(&["--config", file.to_str().unwrap(), "config", "check"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn migrate_and_refdata_load_are_idempotent() {
    let db = TestDb::new();
    let env: Vec<(&str, String)> = db.env().iter().map(|(k, v)| (leak(k), v.clone())).collect();
    let out = run(&["migrate"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 applied"));
    let out = run(&["migrate"], &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 applied"));
    for table in ["HOST", "HOST_TASK", "FILE_TASK", "TASK_HISTORY", "SCHEMA_MIGRATION"] {
        assert_eq!(db.value(&format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{{BP}}' AND TABLE_NAME = '{table}'")), "1");
    }
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SITE_STATE"), "27");
    assert_eq!(
        db.value("SELECT NA_MEASURE_UNIT FROM {RF}.DIM_SPECTRUM_UNIT WHERE ID_MEASURE_UNIT = 2"),
        "dBμV/m"
    );
    // The legacy counters are computed by a view under their original names.
    db.sql("INSERT INTO {BP}.HOST (ID_HOST, NA_HOST_UID) VALUES (1, 'x')");
    db.sql("INSERT INTO {BP}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS) VALUES (1, NOW(), 1, '/d', 'f', 1)");
    assert_eq!(db.value("SELECT NU_PENDING_BACKUP FROM {BP}.VW_HOST_STATUS WHERE ID_HOST = 1"), "1");
    // One row per station file.
    let dup = db.db.sql(&format!(
        "INSERT INTO {}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS) VALUES (1, NOW(), 1, '/d', 'f', 1) ON DUPLICATE KEY UPDATE NU_STATUS = NU_STATUS; SELECT COUNT(*) FROM {}.FILE_TASK",
        db.bpdata, db.bpdata
    ));
    assert_eq!(dup.trim(), "1");
    // A tampered migration is refused.
    db.sql("UPDATE {BP}.SCHEMA_MIGRATION SET NA_CHECKSUM = REPEAT('0', 64) WHERE NU_VERSION = 2");
    let out = run(&["migrate"], &env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
    db.sql("DELETE FROM {BP}.SCHEMA_MIGRATION WHERE NU_VERSION = 2");
    let out = run(&["migrate"], &env);
    assert!(
        out.status.success(),
        "re-applying a half-applied migration converges: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let Some(shared) = shared_dir() else {
        eprintln!("skipping refdata load: ../shared is absent");
        return;
    };
    let refdir = shared.join("reference-data");
    let out = run(&["refdata", "load", refdir.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(first.contains("5570 municipalities"), "{first}");
    assert_eq!(db.value("SELECT COUNT(*) FROM {RF}.DIM_SITE_COUNTY"), "5570");
    assert_eq!(
        db.value("SELECT COUNT(*) FROM {RF}.DIM_SITE_COUNTY WHERE VL_SEAT_LATITUDE IS NOT NULL"),
        "5570"
    );
    assert_eq!(
        db.value(
            "SELECT CONCAT(FK_STATE, ' ', NA_COUNTY) FROM {RF}.DIM_SITE_COUNTY WHERE ID_COUNTY = 5300108"
        ),
        "53 Brasília"
    );
    let out = run(&["refdata", "load", refdir.to_str().unwrap()], &env);
    let second = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(second.contains("0 inserted, 0 updated, 5597 unchanged"), "{second}");
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

#[test]
fn keygen_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let out = run(&["keygen", path.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 64);
    let out = run(&["keygen", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
}

#[test]
fn inspect_prints_the_metadata_of_each_file() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared is absent");
        return;
    };
    let fixtures = shared.join("fixtures/crfs");
    let good = fixtures.join("rfeye002292_210211_T112336.bin");
    let out = run(
        &[
            "inspect",
            "--json",
            good.to_str().unwrap(),
            fixtures.join("rfeye002218_NenhumBlocoDeEspectro.bin").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let objects: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 2, "one object per file");
    let v = &objects[0];
    assert_inspect_keys(v);
    let s = &v["spectra"][0];
    assert_eq!(s["first_sweep"], "2021-02-11T11:23:36.002487Z");
    assert_eq!(
        objects[1]["spectra"].as_array().unwrap().len(),
        0,
        "no-spectrum file: zero spectra, not an error"
    );
    let out = run(&["inspect", good.to_str().unwrap()], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rfeye002292"));
    let out = run(&["inspect", fixtures.join("Script5.cfg").to_str().unwrap()], &[]);
    assert!(!out.status.success(), "a non-CRFS file is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CRFS file"));
}
