//! The operator commands against a real database: every subcommand once.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

struct Ops {
    db: TestDb,
    dir: tempfile::TempDir,
}

impl Ops {
    fn new() -> Ops {
        let db = TestDb::new();
        let dir = tempfile::tempdir().unwrap();
        let ops = Ops { db, dir };
        assert!(ops.run(&["migrate"], None).0);
        assert!(ops.run(&["keygen", ops.dir.path().join("k").to_str().unwrap()], None).0);
        ops
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(binary())
            .args(args)
            .env("APPCATALOGA_CONFIG", empty_config(self.dir.path()))
            .env("APPCATALOGA_SECRETS__KEY_FILE", self.dir.path().join("k"))
            .envs(self.db.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

#[test]
fn every_operator_command_works_against_a_real_database() {
    let ops = Ops::new();
    let db = &ops.db;
    let csv = ops.dir.path().join("nodes.csv");
    std::fs::write(&csv, "node_id,node_UID,node_IP,user,password\n10367,RFEye002080,10.0.0.5,sshUser,CANARY-import\n10368,RFEye002081,10.0.0.6,sshUser,pw2,2828\n").unwrap();
    let (ok, out, err) = ops.run(&["hosts", "import", csv.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(out.contains("imported 2 hosts"), "{out}");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.HOST WHERE BN_HOST_PASSWORD_SEALED IS NOT NULL"), "2");
    assert!(!db.sql("SELECT * FROM {BP}.HOST").contains("CANARY"));
    assert_eq!(db.value("SELECT NA_HOST_PORT FROM {BP}.HOST WHERE ID_HOST = 10368"), "2828");

    let (ok, out, _) = ops.run(
        &["hosts", "set-credentials", "10367", "--user", "other", "--password-stdin"],
        Some("new secret\n"),
    );
    assert!(ok);
    assert!(out.contains("password sealed"));
    assert_eq!(db.value("SELECT NA_HOST_USER FROM {BP}.HOST WHERE ID_HOST = 10367"), "other");

    // Some tasks in various states.
    db.sql(
        "INSERT INTO {BP}.HOST_TASK (FK_HOST, NU_TYPE, DT_HOST_TASK, NU_STATUS, NA_MESSAGE) VALUES (10367, 1, NOW(6), -1, 'auth'), (10368, 1, NOW(6), -3, 'host key');
         INSERT INTO {BP}.FILE_TASK (FK_HOST, DT_FILE_TASK, NU_TYPE, NA_HOST_FILE_PATH, NA_HOST_FILE_NAME, NU_STATUS, NA_ERROR_CODE, NA_SERVER_FILE_PATH, NA_SERVER_FILE_NAME)
         VALUES (10367, NOW(6), 1, '/d', 'a.bin', -1, 'COPY_FAILED', NULL, NULL), (10367, NOW(6), 2, '/d', 'b.bin', 0, NULL, '/repo/2021/x', 'b.bin'),
                (10368, NOW(6), 2, '/d', 'c.bin', -1, 'NOT_CRFS', '/repo/trash/x', 'c.bin')",
    );
    let (ok, out, _) = ops.run(&["hosts", "list", "--json"], None);
    assert!(ok);
    let hosts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hosts.as_array().unwrap().len(), 2);
    assert_eq!(hosts[0]["backup_error"], 1);
    assert_eq!(hosts[0]["processed"], 1);
    let (ok, out, _) = ops.run(&["hosts", "list"], None);
    assert!(ok && out.contains("RFEye002081") && out.contains("last backup"), "{out}");
    let (ok, out, _) = ops.run(&["hosts", "show", "10368"], None);
    assert!(ok && out.contains("10.0.0.6:2828"), "{out}");
    assert!(!ops.run(&["hosts", "show", "1"], None).0, "unknown host is an error");

    let (ok, out, _) = ops.run(&["tasks", "list", "--status", "error", "--json"], None);
    assert!(ok);
    let tasks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 3, "{tasks}");
    let (ok, out, _) = ops.run(&["status", "--json"], None);
    assert!(ok);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(status["errors"].as_array().unwrap().len() >= 2, "{status}");
    assert!(ops.run(&["status"], None).1.contains("file processing"));

    let (ok, out, _) = ops.run(&["tasks", "retry", "--host", "10367"], None);
    assert!(ok);
    assert_eq!(out.trim(), "requeued 1 host tasks and 1 file tasks");
    let (ok, out, _) = ops.run(&["tasks", "reset-errors"], None);
    assert!(ok);
    assert_eq!(out.trim(), "requeued 1 host tasks and 1 file tasks");
    let (ok, out, _) = ops.run(&["reprocess", "--host", "10367"], None);
    assert!(ok);
    assert!(out.contains("1 files queued"), "{out}");
    assert_eq!(
        db.value("SELECT NA_TARGET_PATH FROM {BP}.FILE_TASK WHERE NA_HOST_FILE_NAME = 'b.bin'"),
        "/repo/2021/x/b.bin"
    );
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.TASK_HISTORY WHERE NA_ACTOR LIKE 'operator %'"), "5");
    assert!(ops.run(&["tasks", "list", "--status", "bogus"], None).2.contains("unknown status"));
}
