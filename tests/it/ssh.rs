//! The SSH/SFTP client layer against real OpenSSH stations (no fake server).
//!
//! Needs root (station users, chroot). Covers host-key pinning before authentication (F29,
//! F30), authentication failure (F31), transient vs permanent errors, and the SFTP operations
//! the backup engine relies on.

use std::path::PathBuf;
use std::time::Duration;

use appcataloga::backup::ssh::{
    Auth, ConnectParams, HostKeyPolicy, RemoteKind, SshError, SshOptions, connect,
};
use appcataloga::station::{Station, StationSpec, generate_ed25519};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

fn params(st: &Station, pin: Option<String>, policy: HostKeyPolicy) -> ConnectParams {
    ConnectParams {
        host: "127.0.0.1".into(),
        port: st.port(),
        user: st.user().into(),
        auth: Auth::Password(SecretString::from(st.password().to_string())),
        pinned_fingerprint: pin,
        policy,
    }
}

fn opts() -> SshOptions {
    SshOptions { connect_timeout: Duration::from_secs(10), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_connect_pins_on_first_contact_and_basic_ops_work() {
    let st = Station::start(StationSpec::new("pw")).unwrap();
    let p = st.add_file("a.bin", b"hello").unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    assert!(r.newly_pinned());
    assert_eq!(r.host_key_fingerprint(), st.host_key_fingerprint().unwrap());
    let s = r.lstat(&p).await.unwrap().unwrap();
    assert_eq!((s.size, s.kind), (5, RemoteKind::File));
    assert!(s.mtime > 1_600_000_000);
    assert_eq!(r.lstat("/mnt/internal/data/missing").await.unwrap(), None);
    assert_eq!(r.lstat("/mnt/internal/data").await.unwrap().unwrap().kind, RemoteKind::Dir);
    assert_eq!(r.realpath("/mnt/internal/data/../data").await.unwrap(), "/mnt/internal/data");
    assert_eq!(
        r.read_to_vec("/etc/node/indexerD.cfg", 64 * 1024).await.unwrap().unwrap(),
        st.read("/etc/node/indexerD.cfg").unwrap().unwrap()
    );
    r.close().await;

    // With the pin stored, strict mode accepts it and nothing is newly pinned.
    let pin = Some(st.host_key_fingerprint().unwrap());
    let r = connect(&params(&st, pin, HostKeyPolicy::Strict), &opts()).await.unwrap();
    assert!(!r.newly_pinned());
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_authentication_works() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    generate_ed25519(&key, "test-client").unwrap();
    let pubkey = PathBuf::from(format!("{}.pub", key.display()));
    let st =
        Station::start(StationSpec::new("key").with_password(None).with_authorized_key(&pubkey)).unwrap();
    let mut p = params(&st, st.host_key_fingerprint().ok(), HostKeyPolicy::Strict);
    p.auth = Auth::KeyFile(key.clone());
    let r = connect(&p, &opts()).await.unwrap();
    assert!(r.lstat("/etc/node/indexerD.cfg").await.unwrap().is_some());
    r.close().await;

    // Password authentication is disabled on this station.
    let p = params(&st, st.host_key_fingerprint().ok(), HostKeyPolicy::Strict);
    let e = connect(&p, &opts()).await.err().unwrap();
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_is_byte_identical_with_the_right_sha256() {
    let st = Station::start(StationSpec::new("dl")).unwrap();
    // Not a multiple of the read size, several chunks in flight.
    let big = st.add_random_file("big.bin", 9 * 1024 * 1024 + 12345, 7).unwrap();
    let empty = st.add_file("empty.bin", b"").unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for remote in [&big, &empty] {
        let local = dir.path().join("out");
        let mut f = tokio::fs::File::create(&local).await.unwrap();
        let d = r.download(remote, &mut f).await.unwrap();
        drop(f);
        let want = st.read(remote).unwrap().unwrap();
        let got = std::fs::read(&local).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "content differs for {remote}");
        assert_eq!(d.bytes, want.len() as u64);
        assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&want)));
        assert_eq!(d.sha256_hex().len(), 64);
    }
    // Small reads and few in flight: many short requests, same bytes.
    r.close().await;
    let o = SshOptions { read_chunk: 10_000, max_inflight_reads: 3, ..opts() };
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &o).await.unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let d = r.download(&big, &mut buf).await.unwrap();
    assert_eq!(d.bytes, buf.len() as u64);
    assert!(buf == st.read(&big).unwrap().unwrap());
    let e = r.download("/mnt/internal/data/missing.bin", &mut Vec::new()).await.unwrap_err();
    assert!(matches!(e, SshError::NotFound { .. }), "{e}");
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_before_any_authentication() {
    let mut st = Station::start(StationSpec::new("mitm")).unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    let pin = r.host_key_fingerprint().to_string();
    assert!(r.newly_pinned());
    r.close().await;
    assert!(st.auth_attempts() > 0, "the first contact authenticated");

    st.restart_with_new_host_key().unwrap();
    let new_fp = st.host_key_fingerprint().unwrap();
    assert_ne!(new_fp, pin);
    for policy in [HostKeyPolicy::AcceptNew, HostKeyPolicy::Strict] {
        let e = connect(&params(&st, Some(pin.clone()), policy), &opts()).await.err().unwrap();
        match &e {
            SshError::HostKeyMismatch { target, expected, got } => {
                assert_eq!(target, &format!("127.0.0.1:{}", st.port()));
                assert_eq!(expected, &pin);
                assert_eq!(got, &new_fp);
            }
            other => panic!("expected HostKeyMismatch, got {other:?}"),
        }
        assert!(e.is_permanent() && !e.is_transient());
        let msg = e.to_string();
        assert!(msg.contains("trust-key") && msg.contains(&pin), "{msg}");
    }
    // sshd saw the connections but no authentication request at all.
    std::thread::sleep(Duration::from_millis(300));
    let log = st.sshd_log();
    // The readiness probe of the restart, then our two refused connections.
    assert!(log.matches("Connection from 127.0.0.1").count() >= 3, "{log}");
    assert_eq!(st.auth_attempts(), 0, "{log}");
    assert!(!log.contains("password"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_without_pin_is_refused_before_authentication() {
    let st = Station::start(StationSpec::new("strict")).unwrap();
    let e = connect(&params(&st, None, HostKeyPolicy::Strict), &opts()).await.err().unwrap();
    match &e {
        SshError::HostKeyUnknown { got, .. } => {
            assert_eq!(got, &st.host_key_fingerprint().unwrap())
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    assert!(e.is_permanent());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(st.auth_attempts(), 0, "{}", st.sshd_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_file_policy() {
    let st = Station::start(StationSpec::new("kh")).unwrap();
    let other = Station::start(StationSpec::new("kh-other")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, st.known_hosts_line().unwrap()).unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::KnownHostsFile(kh.clone())), &opts()).await.unwrap();
    assert!(!r.newly_pinned());
    r.close().await;
    // Not listed → unknown.
    let e = connect(&params(&other, None, HostKeyPolicy::KnownHostsFile(kh.clone())), &opts())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e}");
    // Listed with another key → mismatch.
    let line = st.known_hosts_line().unwrap().replace(&st.port().to_string(), &other.port().to_string());
    std::fs::write(&kh, line).unwrap();
    let e = connect(&params(&other, None, HostKeyPolicy::KnownHostsFile(kh)), &opts()).await.err().unwrap();
    assert!(matches!(e, SshError::HostKeyMismatch { .. }), "{e}");
    assert_eq!(other.auth_attempts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_permanent_auth_failure() {
    let st = Station::start(StationSpec::new("badpw")).unwrap();
    let mut p = params(&st, None, HostKeyPolicy::AcceptNew);
    p.auth = Auth::Password(SecretString::from("definitely-wrong".to_string()));
    let e = connect(&p, &opts()).await.err().unwrap();
    assert!(matches!(e, SshError::AuthFailed { .. }), "{e}");
    assert!(!e.is_transient() && e.is_permanent());
    assert!(!e.to_string().contains("definitely-wrong"));
    assert!(!format!("{e:?}").contains("definitely-wrong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_and_silent_server_are_transient() {
    let mut st = Station::start(StationSpec::new("down")).unwrap();
    st.kill();
    let e = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.err().unwrap();
    assert!(matches!(e, SshError::Connect { .. }), "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains(&format!("127.0.0.1:{}", st.port())));
    // Back up on the same port: connecting works again.
    st.start_again().unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    r.close().await;

    // A listener that never speaks SSH: the absolute connect deadline fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p = params(&st, None, HostKeyPolicy::AcceptNew);
    p.port = silent.local_addr().unwrap().port();
    let o = SshOptions { connect_timeout: Duration::from_millis(500), ..opts() };
    let t = std::time::Instant::now();
    let e = connect(&p, &o).await.err().unwrap();
    assert!(matches!(e, SshError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_and_list_operations_in_the_indexer_folder() {
    let st = Station::start(StationSpec::new("ops")).unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    let flag = "/mnt/internal/.indexerD/.halt.cookie";
    assert!(r.create_exclusive(flag, b"{\"owner\":1}").await.unwrap());
    assert!(!r.create_exclusive(flag, b"other").await.unwrap());
    assert_eq!(st.read(flag).unwrap().unwrap(), b"{\"owner\":1}");

    let done = "/mnt/internal/.indexerD/backup.done.list";
    r.append(done, b"/a\n").await.unwrap();
    r.append(done, b"/b\n").await.unwrap();
    assert_eq!(st.read(done).unwrap().unwrap(), b"/a\n/b\n");
    r.overwrite(done, b"/c\n").await.unwrap();
    assert_eq!(st.read(done).unwrap().unwrap(), b"/c\n");

    // rename never replaces.
    let due = "/mnt/internal/.indexerD/files.changed.list";
    let taken = "/mnt/internal/.indexerD/files.changed.list.taken";
    st.write_due_backup_raw(b"x\0/y\0\n").unwrap();
    r.rename(due, taken).await.unwrap();
    assert!(!st.exists(due) && st.exists(taken));
    st.write_due_backup_raw(b"new\n").unwrap();
    let e = r.rename(due, taken).await.unwrap_err();
    assert!(matches!(e, SshError::AlreadyExists { .. }), "{e}");
    assert_eq!(st.read(taken).unwrap().unwrap(), b"x\0/y\0\n");
    r.remove(taken).await.unwrap();
    r.remove(flag).await.unwrap();
    assert!(!st.exists(flag) && !st.exists(taken));
    let e = r.remove(flag).await.unwrap_err();
    assert!(matches!(e, SshError::NotFound { .. }), "{e}");
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_to_vec_respects_the_cap_and_missing_is_none() {
    let st = Station::start(StationSpec::new("cap")).unwrap();
    let p = st.add_random_file("list.bin", 300_000, 3).unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    let e = r.read_to_vec(&p, 299_999).await.unwrap_err();
    assert!(matches!(e, SshError::TooLarge { limit: 299_999, .. }), "{e}");
    assert!(e.is_permanent());
    let v = r.read_to_vec(&p, 300_000).await.unwrap().unwrap();
    assert!(v == st.read(&p).unwrap().unwrap());
    assert_eq!(r.read_to_vec("/nope", 10).await.unwrap(), None);
    assert_eq!(r.read_to_vec(&st.add_file("e", b"").unwrap(), 0).await.unwrap().unwrap(), b"");
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_are_reported_and_station_data_is_read_only() {
    let st = Station::start(StationSpec::new("links")).unwrap();
    st.add_file("real.bin", b"r").unwrap();
    st.add_symlink("/etc/node/indexerD.cfg", "/mnt/internal/data/link.bin").unwrap();
    let r = connect(&params(&st, None, HostKeyPolicy::AcceptNew), &opts()).await.unwrap();
    let s = r.lstat("/mnt/internal/data/link.bin").await.unwrap().unwrap();
    assert_eq!(s.kind, RemoteKind::Symlink);
    // The server's user cannot change station data.
    let e = r.overwrite("/mnt/internal/data/real.bin", b"x").await.unwrap_err();
    assert!(matches!(e, SshError::PermissionDenied { .. }), "{e}");
    let e = r.remove("/mnt/internal/data/real.bin").await.unwrap_err();
    assert!(matches!(e, SshError::PermissionDenied { .. }), "{e}");
    assert_eq!(st.read("/mnt/internal/data/real.bin").unwrap().unwrap(), b"r");
    r.close().await;
}

/// The SFTP benchmark end to end on a small file (the real figures come from
/// `appcataloga bench sftp`). `APPCATALOGA_BENCH_SFTP_MIB` sets the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored"]
async fn bench_sftp_runs() {
    let size_mib =
        std::env::var("APPCATALOGA_BENCH_SFTP_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let args = appcataloga::bench_sftp::SftpBenchArgs {
        size_mib,
        runs: std::env::var("APPCATALOGA_BENCH_SFTP_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1),
        delay_ms: env_or("APPCATALOGA_BENCH_SFTP_DELAY_MS", 25),
        delayed_size_mib: std::env::var("APPCATALOGA_BENCH_SFTP_DELAYED_MIB")
            .ok()
            .and_then(|v| v.parse().ok()),
        read_chunk_kib: 256,
        inflight: env_or("APPCATALOGA_BENCH_SFTP_INFLIGHT", 32),
        window_mib: env_or("APPCATALOGA_BENCH_SFTP_WINDOW_MIB", 16),
        openssh_cipher: std::env::var("APPCATALOGA_BENCH_SFTP_CIPHER").ok(),
        skip_scp: std::env::var_os("APPCATALOGA_BENCH_SFTP_SKIP_SCP").is_some(),
        work_dir: None,
    };
    appcataloga::bench_sftp::run(args).await.unwrap();
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
