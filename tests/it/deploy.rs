//! Deployment: `deploy.sh` install → install again → update → remove → remove --purge in a
//! sandbox prefix against a private MariaDB (test schemas and a test-only database user, so no
//! real BPDATA is touched), its self-update, shellcheck, and `scripts/check-systemd.sh`
//! (`systemd-analyze verify` and `security` of the unit).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode()
        & 0o7777
}

/// `deploy.sh ARGS` with a clean environment plus `env`; panics with the output on failure.
fn deploy(args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("deploy.sh"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "deploy.sh {args:?} failed:\n{all}");
    all
}

/// Lines reporting a change.
fn changes(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.starts_with("changed ")).collect()
}

/// `KEY=VALUE` lines of an env file.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Runs SQL as the account of a `mysql://user:password@host:port/` URL.
fn sql_as(url: &str, sql: &str) -> Output {
    let rest = url.strip_prefix("mysql://").unwrap().trim_end_matches('/');
    let (auth, hostport) = rest.split_once('@').unwrap();
    let (user, password) = auth.split_once(':').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-N", "-B", "-h", host, "-P", port, "-u", user, "-e", sql])
        .env("MYSQL_PWD", password)
        .output()
        .unwrap()
}

#[test]
fn deploy_install_update_remove_in_a_sandbox() {
    let db = TestDb::new();
    let sandbox = tempfile::tempdir().unwrap();
    let p = sandbox.path();
    let db_user = format!("acat_d{}", std::process::id());
    let env = vec![
        ("APPCATALOGA_DATABASE__BPDATA_SCHEMA".to_string(), db.bpdata.clone()),
        ("APPCATALOGA_DATABASE__RFDATA_SCHEMA".to_string(), db.rfdata.clone()),
    ];
    let url = db.db.url();
    let prefix = p.to_str().unwrap();
    let refdata = shared_dir().map(|d| d.join("reference-data")).filter(|d| d.is_dir());
    let mut install_args =
        vec!["-i", "--prefix", prefix, "--binary", binary(), "--db-url", &url, "--db-user", &db_user];
    let refdata_str = refdata.as_ref().map(|d| d.to_str().unwrap().to_string());
    if let Some(dir) = &refdata_str {
        install_args.extend(["--refdata", dir.as_str()]);
    }

    // Install.
    let out = deploy(&install_args, &env);
    let etc = p.join("etc/appcataloga");
    let bin = p.join("usr/local/bin/appcataloga");
    let query = p.join("usr/lib/zabbix/externalscripts/appcataloga-query");
    let unit = p.join("etc/systemd/system/appcataloga.service");
    let config = etc.join("appcataloga.toml");
    let key = etc.join("secret.key");
    let env_path = etc.join("appcataloga.env");
    let repo = p.join("mnt/reposfi");
    assert_eq!(mode(&bin), 0o755, "{out}");
    assert_eq!(mode(&query), 0o755);
    assert_eq!(
        std::fs::read(&config).unwrap(),
        std::fs::read(repo_root().join("etc/appcataloga.toml")).unwrap()
    );
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo_root().join("systemd/appcataloga.service")).unwrap()
    );
    assert_eq!(mode(&key), 0o600, "the station-password key is private");
    assert_eq!(mode(&env_path), 0o640);
    assert_eq!(mode(&etc.join("migrate.env")), 0o600);
    assert!(p.join("var/lib/appcataloga").is_dir() && repo.is_dir(), "{out}");
    assert!(out.contains("system user appcataloga (skipped: sandbox)"), "{out}");
    let doc = p.join("usr/share/doc/appcataloga");
    assert!(
        doc.join("README.md").is_file() && doc.join("zabbix/appcataloga_template.yaml").is_file(),
        "{out}"
    );
    // The migration ran (as the migration account) into the test schemas.
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.SCHEMA_MIGRATION"), "3", "{out}");
    assert!(
        db.value("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{RF}'")
            .parse::<u32>()
            .unwrap()
            > 5
    );
    if refdata.is_some() {
        assert!(out.contains("changed   reference data"), "{out}");
    }

    // The daemon's environment: the runtime account, no migration at start, the test schemas.
    let daemon_env = env_file(&env_path);
    let runtime_url = daemon_env.iter().find(|(k, _)| k == "APPCATALOGA_DATABASE__URL").unwrap().1.clone();
    assert!(runtime_url.starts_with(&format!("mysql://{db_user}:")), "{runtime_url}");
    assert!(daemon_env.contains(&("APPCATALOGA_DATABASE__MIGRATE_ON_START".into(), "false".into())));
    assert!(daemon_env.contains(&("APPCATALOGA_DATABASE__BPDATA_SCHEMA".into(), db.bpdata.clone())));
    // Least privilege: the runtime account reads and writes rows but cannot change the schema.
    let ok = sql_as(&runtime_url, &format!("SELECT COUNT(*) FROM `{}`.HOST", db.bpdata));
    assert!(ok.status.success(), "{}", text(&ok));
    let denied = sql_as(&runtime_url, &format!("CREATE TABLE `{}`.X (a INT)", db.bpdata));
    assert!(!denied.status.success() && text(&denied).contains("denied"), "{}", text(&denied));
    let denied = sql_as(&runtime_url, &format!("DROP TABLE `{}`.HOST", db.bpdata));
    assert!(!denied.status.success(), "{}", text(&denied));

    // `appcataloga config check` works with the installed configuration and environment.
    let check = Command::new(&bin)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env_clear()
        .envs(daemon_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("APPCATALOGA_SECRETS__KEY_FILE", &key)
        .output()
        .unwrap();
    let check_text = text(&check);
    assert!(check.status.success(), "{check_text}");
    assert!(check_text.contains(&format!("bpdata_schema = \"{}\"", db.bpdata)), "{check_text}");
    assert!(check_text.contains("ok: station-password key"), "{check_text}");
    assert!(!check_text.contains(runtime_url.split(['@', ':']).nth(2).unwrap()), "password redacted");

    // Install again: nothing changes.
    let key_before = std::fs::read(&key).unwrap();
    let env_before = std::fs::read(&env_path).unwrap();
    let out = deploy(&install_args, &env);
    assert!(changes(&out).is_empty(), "second install changed something:\n{out}");
    assert!(out.contains("summary: install: 0 changed") && out.contains("unchanged"), "{out}");
    assert_eq!(std::fs::read(&key).unwrap(), key_before, "the key is never replaced");
    assert_eq!(std::fs::read(&env_path).unwrap(), env_before, "the database password is kept");

    // Update: a stale binary is replaced, an edited configuration is kept (shipped one as .new).
    let mut stale = std::fs::read(&bin).unwrap();
    stale.extend_from_slice(b"stale");
    std::fs::write(&bin, &stale).unwrap();
    let mut edited = std::fs::read_to_string(&config).unwrap();
    edited = edited.replace("# listen = \"0.0.0.0:5555\"", "listen = \"127.0.0.1:5555\"");
    assert!(edited.contains("\nlisten = \"127.0.0.1:5555\""));
    std::fs::write(&config, &edited).unwrap();
    let update_args = ["-u", "--prefix", prefix, "--binary", binary()];
    let out = deploy(&update_args, &env);
    assert!(out.contains(&format!("changed   {}", bin.display())), "{out}");
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(binary()).unwrap());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited, "the operator's configuration is kept");
    assert_eq!(
        std::fs::read(etc.join("appcataloga.toml.new")).unwrap(),
        std::fs::read(repo_root().join("etc/appcataloga.toml")).unwrap()
    );
    assert!(out.contains("unchanged database migrations"), "{out}");
    let out = deploy(&update_args, &env);
    assert!(changes(&out).is_empty(), "second update changed something:\n{out}");

    // Remove: binaries and unit go; configuration, key, state and repository stay.
    std::fs::write(repo.join("data.bin"), b"measurements").unwrap();
    let out = deploy(&["-r", "--prefix", prefix], &env);
    assert!(!bin.exists() && !query.exists() && !unit.exists() && !doc.exists(), "{out}");
    assert!(config.exists() && key.exists() && env_path.exists(), "{out}");
    assert!(p.join("var/lib/appcataloga").is_dir());
    assert_eq!(std::fs::read(repo.join("data.bin")).unwrap(), b"measurements");

    // Remove --purge: configuration, key and state go too; never the repository or the database.
    let out = deploy(&["-r", "--purge", "--prefix", prefix], &env);
    assert!(!etc.exists() && !p.join("var/lib/appcataloga").exists(), "{out}");
    assert_eq!(std::fs::read(repo.join("data.bin")).unwrap(), b"measurements");
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.SCHEMA_MIGRATION"), "3");

    // Installing again after a purge: the database accounts exist but their passwords were
    // purged with the env files, so new ones are set; the migrations are already there.
    let out = deploy(&install_args, &env);
    assert!(out.contains("password set to the one in its env file"), "{out}");
    assert!(out.contains("unchanged database migrations"), "{out}");
    let daemon_env = env_file(&env_path);
    let new_url = &daemon_env.iter().find(|(k, _)| k == "APPCATALOGA_DATABASE__URL").unwrap().1;
    assert_ne!(new_url, &runtime_url, "a new password");
    let ok = sql_as(new_url, &format!("SELECT COUNT(*) FROM `{}`.HOST", db.bpdata));
    assert!(ok.status.success(), "{}", text(&ok));
}

#[test]
fn deploy_through_the_database_socket() {
    let db = TestDb::new();
    let sandbox = tempfile::tempdir().unwrap();
    let prefix = sandbox.path().to_str().unwrap();
    let socket = db.db.dir.join("sock");
    let db_user = format!("acat_s{}", std::process::id());
    let env = vec![
        ("APPCATALOGA_DATABASE__BPDATA_SCHEMA".to_string(), db.bpdata.clone()),
        ("APPCATALOGA_DATABASE__RFDATA_SCHEMA".to_string(), db.rfdata.clone()),
    ];
    let args = [
        "-i",
        "--prefix",
        prefix,
        "--binary",
        binary(),
        "--db-socket",
        socket.to_str().unwrap(),
        "--db-user",
        &db_user,
        "--no-zabbix",
    ];
    let out = deploy(&args, &env);
    assert_eq!(db.value("SELECT COUNT(*) FROM {BP}.SCHEMA_MIGRATION"), "3", "{out}");
    // The daemon's URL is TCP on the server's port, and its account works.
    let daemon_env = env_file(&sandbox.path().join("etc/appcataloga/appcataloga.env"));
    let url = &daemon_env.iter().find(|(k, _)| k == "APPCATALOGA_DATABASE__URL").unwrap().1;
    assert!(url.ends_with(&format!("@127.0.0.1:{}/", db.db.port)), "{url}");
    let ok = sql_as(url, &format!("SELECT COUNT(*) FROM `{}`.SCHEMA_MIGRATION", db.bpdata));
    assert!(ok.status.success(), "{}", text(&ok));
    let out = deploy(&args, &env);
    assert!(changes(&out).is_empty(), "{out}");
}

#[test]
fn deploy_without_database_and_help() {
    let sandbox = tempfile::tempdir().unwrap();
    let prefix = sandbox.path().to_str().unwrap();
    let args = ["-i", "--prefix", prefix, "--binary", binary(), "--no-db", "--no-zabbix"];
    let out = deploy(&args, &[]);
    assert!(out.contains("database (skipped: --no-db)"), "{out}");
    let env_text = std::fs::read_to_string(sandbox.path().join("etc/appcataloga/appcataloga.env")).unwrap();
    assert!(env_text.contains("# APPCATALOGA_DATABASE__URL="), "{env_text}");
    assert!(!sandbox.path().join("usr/lib/zabbix").exists());
    let out = deploy(&args, &[]);
    assert!(changes(&out).is_empty(), "{out}");

    // DESTDIR works like --prefix.
    let dest = tempfile::tempdir().unwrap();
    let out = deploy(
        &["-i", "--binary", binary(), "--no-db"],
        &[("DESTDIR".into(), dest.path().to_str().unwrap().into())],
    );
    assert!(dest.path().join("usr/local/bin/appcataloga").is_file(), "{out}");

    let help = deploy(&["-h"], &[]);
    for option in ["-i", "-u", "-r", "-du", "--prefix", "--binary", "--no-db", "--db-url", "--purge"] {
        assert!(help.contains(option), "help lacks {option}");
    }
    let bad = Command::new("bash").arg(repo_root().join("deploy.sh")).arg("--bogus").output().unwrap();
    assert!(!bad.status.success());
}

#[test]
fn deploy_updates_itself_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("deploy.sh");
    let original = std::fs::read_to_string(repo_root().join("deploy.sh")).unwrap();
    std::fs::write(&script, &original).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |source: &Path| {
        Command::new("bash")
            .arg(&script)
            .arg("-du")
            .arg(source)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    };

    // Same version: unchanged.
    let same = run(&repo_root().join("deploy.sh"));
    assert!(same.status.success() && text(&same).contains("unchanged"), "{}", text(&same));

    // A newer version (with CRLF line endings, as a Windows checkout would have) replaces it.
    let newer = original.replacen("deploy_version=", "deploy_version=9.9.9\n#", 1).replace('\n', "\r\n");
    let source = dir.path().join("new-deploy.sh");
    std::fs::write(&source, newer).unwrap();
    let out = run(&source);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("-> 9.9.9"), "{}", text(&out));
    let installed = std::fs::read_to_string(&script).unwrap();
    assert!(installed.contains("deploy_version=9.9.9\n") && !installed.contains('\r'));
    assert_eq!(mode(&script), 0o755);

    // A broken source is refused and the script is left alone.
    let broken = dir.path().join("broken.sh");
    std::fs::write(&broken, "#!/usr/bin/env bash\ndeploy_version=10\nif then fi (\n").unwrap();
    let out = run(&broken);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&script).unwrap(), installed);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".deploy.sh."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn deploy_scripts_are_shellcheck_clean() {
    if Command::new("shellcheck").arg("--version").output().is_err() {
        eprintln!("SKIP shellcheck: not installed (apt-get install shellcheck)");
        return;
    }
    let out = Command::new("shellcheck")
        .current_dir(repo_root())
        .args(["deploy.sh", "scripts/check-systemd.sh"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn systemd_unit_passes_verify_and_security() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/check-systemd.sh"))
        .env("ACAT_BINARY", binary())
        .output()
        .unwrap();
    let all = text(&out);
    if out.status.code() == Some(77) {
        eprintln!("SKIP systemd checks: {all}");
        return;
    }
    let exposure = all.lines().find(|l| l.starts_with("exposure: ")).unwrap_or("exposure: ?");
    eprintln!("{exposure}");
    assert!(out.status.success(), "{all}");
}
