//! The station simulator: real sshd stations and the Rust `indexerD` (spec §3.1).
//!
//! Needs root (useradd, chroot). The indexer tests work on the station tree directly, as the
//! agent does on a real node.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use appcataloga::station::{IndexerOutcome, Station, StationSpec};

const DUE: &str = "/mnt/internal/.indexerD/files.changed.list";
const DONE: &str = "/mnt/internal/.indexerD/backup.done.list";
const FLAG: &str = "/mnt/internal/.indexerD/.halt.cookie";

#[test]
fn station_tree_has_the_on_station_layout_and_ownership() {
    let st = Station::start(StationSpec::new("layout")).unwrap();
    let cfg = std::fs::read_to_string(st.path("/etc/node/indexerD.cfg")).unwrap();
    for line in [
        "LOCAL_REPO=/mnt/internal/data",
        "INDEXERD_FOLDER=/mnt/internal/.indexerD",
        "DUE_BACKUP=/mnt/internal/.indexerD/files.changed.list",
        "BACKUP_DONE=/mnt/internal/.indexerD/backup.done.list",
        "HALT_FLAG=/mnt/internal/.indexerD/.halt.cookie",
        "HALT_TIMEOUT=300",
    ] {
        assert!(cfg.lines().any(|l| l == line), "{line} missing from\n{cfg}");
    }
    let p = st.add_file("sub/x.bin", b"hello").unwrap();
    assert_eq!(p, "/mnt/internal/data/sub/x.bin");
    let meta = std::fs::metadata(st.path(&p)).unwrap();
    assert_eq!(meta.uid(), 0, "data files are root-owned");
    assert_eq!(meta.mode() & 0o777, 0o644);
    let idx = std::fs::metadata(st.path("/mnt/internal/.indexerD")).unwrap();
    assert_eq!(idx.uid(), st.user_ids().0, "indexer folder belongs to the station user");
    assert!(st.port() > 0);
    assert!(st.user().starts_with("acatst"));
    let fp = st.host_key_fingerprint().unwrap();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    assert_eq!(st.read(&p).unwrap().unwrap(), b"hello");
}

#[test]
fn teardown_kills_sshd_and_removes_the_tree() {
    let st = Station::start(StationSpec::new("teardown")).unwrap();
    let dir = st.dir().to_path_buf();
    let pid = st.sshd_pid().unwrap();
    let addr = st.addr();
    drop(st);
    assert!(!dir.exists());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "sshd still alive: {stat}");
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}

#[test]
fn two_stations_get_distinct_ports_users_and_host_keys() {
    let a = Station::start(StationSpec::new("a")).unwrap();
    let b = Station::start(StationSpec::new("b")).unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.user(), b.user());
    assert_ne!(a.host_key_fingerprint().unwrap(), b.host_key_fingerprint().unwrap());
}

#[test]
fn indexer_writes_the_exact_due_backup_format_sorted_and_unique() {
    let st = Station::start(StationSpec::new("indexer")).unwrap();
    // Files written before this second (the agent's timestamp has whole-second resolution, so
    // a file modified in the same second as a run is listed again by the next run).
    let past = SystemTime::now() - Duration::from_secs(60);
    for (rel, bytes) in [("b.bin", b"b"), ("a.bin", b"a"), ("2024/c.bin", b"c")] {
        let p = st.add_file(rel, bytes).unwrap();
        st.set_mtime(&p, past).unwrap();
    }
    let out = st.run_indexer().unwrap();
    assert_eq!(out, IndexerOutcome::Ran { expired_stale_flag: false, changed: 3, due: 3 });
    assert_eq!(
        st.read(DUE).unwrap().unwrap(),
        b"/mnt/internal/data\0/a.bin\0\n/mnt/internal/data\0/b.bin\0\n\
          /mnt/internal/data/2024\0/c.bin\0\n"
    );
    assert!(!st.halt_flag_exists(), "the agent removes its own flag");
    assert_eq!(
        std::fs::metadata(st.path(DUE)).unwrap().uid(),
        st.user_ids().0,
        "the server must be able to rename/remove DUE_BACKUP"
    );

    // Nothing new: nothing changed, the list is kept.
    let out = st.run_indexer().unwrap();
    assert!(matches!(out, IndexerOutcome::Ran { changed: 0, due: 3, .. }), "{out:?}");

    // A file modified later is listed, merged in order; an old one is not listed again.
    let d = st.add_file("0.bin", b"0").unwrap();
    st.set_mtime(&d, SystemTime::now() + Duration::from_secs(5)).unwrap();
    let old = st.add_file("old.bin", b"old").unwrap();
    st.set_mtime(&old, SystemTime::now() - Duration::from_secs(3600)).unwrap();
    let out = st.run_indexer().unwrap();
    assert!(matches!(out, IndexerOutcome::Ran { changed: 1, due: 4, .. }), "{out:?}");
    assert!(
        st.read(DUE)
            .unwrap()
            .unwrap()
            .starts_with(b"/mnt/internal/data\0/0.bin\0\n/mnt/internal/data\0/a.bin\0\n")
    );
    // Symlinks are not regular files (find -type f).
    st.add_symlink("/etc/node/indexerD.cfg", "/mnt/internal/data/link.bin").unwrap();
    let out = st.run_indexer_at(SystemTime::now() + Duration::from_secs(10)).unwrap();
    // 0.bin is newer than the last timestamp again (its mtime is in the future): listed again,
    // de-duplicated; the symlink is not listed.
    assert!(matches!(out, IndexerOutcome::Ran { changed: 1, due: 4, .. }), "{out:?}");
    let due = st.read(DUE).unwrap().unwrap();
    assert!(!due.windows(8).any(|w| w == b"link.bin"));
}

#[test]
fn indexer_merges_with_an_existing_due_backup_and_dedupes_backup_done() {
    let st = Station::start(StationSpec::new("merge")).unwrap();
    st.write_due_backup_raw(b"/mnt/internal/data\0/z.bin\0\n/mnt/internal/data\0/z.bin\0").unwrap();
    st.write_user_file(DONE, b"/x\n/a\n/x\n").unwrap();
    st.add_file("m.bin", b"m").unwrap();
    let out = st.run_indexer().unwrap();
    assert!(matches!(out, IndexerOutcome::Ran { changed: 1, due: 2, .. }), "{out:?}");
    assert_eq!(
        st.read(DUE).unwrap().unwrap(),
        b"/mnt/internal/data\0/m.bin\0\n/mnt/internal/data\0/z.bin\0\n"
    );
    assert_eq!(st.read(DONE).unwrap().unwrap(), b"/a\n/x\n");
}

#[test]
fn indexer_honours_a_fresh_halt_flag() {
    let st = Station::start(StationSpec::new("fresh-flag")).unwrap();
    st.add_file("a.bin", b"a").unwrap();
    st.hold_halt_flag().unwrap();
    st.age_halt_flag(Duration::from_secs(299 * 60)).unwrap();
    assert_eq!(st.run_indexer().unwrap(), IndexerOutcome::Halted);
    assert!(st.halt_flag_exists(), "a foreign fresh flag is left alone");
    assert!(st.read(DUE).unwrap().is_none(), "nothing was indexed");
    st.release_halt_flag().unwrap();
    assert!(matches!(st.run_indexer().unwrap(), IndexerOutcome::Ran { due: 1, .. }));
}

#[test]
fn indexer_expires_a_stale_halt_flag_and_runs() {
    let st = Station::start(StationSpec::new("stale-flag")).unwrap();
    st.add_file("a.bin", b"a").unwrap();
    st.hold_halt_flag().unwrap();
    st.age_halt_flag(Duration::from_secs(302 * 60)).unwrap();
    let out = st.run_indexer().unwrap();
    assert_eq!(out, IndexerOutcome::Ran { expired_stale_flag: true, changed: 1, due: 1 });
    assert!(!st.halt_flag_exists());
    assert!(!st.exists(FLAG));
}

#[test]
fn indexer_timer_runs_periodically() {
    let mut st = Station::start(StationSpec::new("timer")).unwrap();
    st.add_file("a.bin", b"a").unwrap();
    st.start_indexer_timer(Duration::from_millis(100));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while st.read(DUE).unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    st.stop_indexer_timer();
    assert_eq!(st.read(DUE).unwrap().unwrap(), b"/mnt/internal/data\0/a.bin\0\n");
}

#[test]
fn crfs_files_can_be_placed_on_a_station() {
    let st = Station::start(StationSpec::new("crfs")).unwrap();
    let spec = appcataloga::crfs::generator::small_v5(1);
    let p = st.add_crfs_file("SCAN_M_450470_rfeye002292_210211_111912.bin", &spec).unwrap();
    assert_eq!(st.read(&p).unwrap().unwrap(), appcataloga::crfs::generator::generate(&spec).unwrap());
}
