//! Operator commands: `status`, `hosts …`, `tasks …`, `reprocess` — tables for people,
//! `--json` for scripts. This is the binary edge (anyhow allowed); the SQL is in `store::ops`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;
use serde::Serialize;

use crate::secret::StationKey;
use crate::store::Store;
use crate::store::ops::{HostRow, TaskFilter, TaskRow};

/// Parses `error`, `pending`, … or a number.
pub fn parse_status(s: &str) -> anyhow::Result<i8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "frozen" => -3,
        "stopped" | "suspended" => -2,
        "error" | "failed" => -1,
        "done" => 0,
        "pending" => 1,
        "running" => 2,
        n => n.parse().with_context(|| {
            format!("unknown status {s:?}: use error, pending, running, done, stopped, frozen")
        })?,
    })
}

fn condition_name(c: i8) -> &'static str {
    match c {
        0 => "ok",
        1 => "no daemon",
        2 => "halt flag alert",
        3 => "host key mismatch",
        4 => "authentication failed",
        5 => "unreachable",
        _ => "?",
    }
}

/// Prints rows as an aligned table.
fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<w$}", w = widths[i])
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect()))?;
    for r in rows {
        writeln!(out, "{}", line(r.clone()))?;
    }
    Ok(())
}

fn json<T: Serialize>(out: &mut impl Write, value: &T) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// `appcataloga status`.
///
/// # Errors
/// Database failures.
pub async fn status(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let s = store.queue_summary().await.context("reading the queue")?;
    let mut out = std::io::stdout().lock();
    if as_json {
        return json(&mut out, &s);
    }
    writeln!(out, "queue")?;
    let mut rows = Vec::new();
    for (st, n) in &s.host_tasks {
        rows.push(vec!["host backup".into(), crate::store::status::name(*st).into(), n.to_string()]);
    }
    for (ty, st, n) in &s.file_tasks {
        let stage = if *ty == 1 { "file copy" } else { "file processing" };
        rows.push(vec![stage.into(), crate::store::status::name(*st).into(), n.to_string()]);
    }
    table(&mut out, &["stage", "status", "tasks"], &rows)?;
    writeln!(
        out,
        "\nlast hour: {} files copied ({:.1} MB), {} files catalogued",
        s.copied_last_hour,
        s.bytes_last_hour as f64 / 1e6,
        s.processed_last_hour
    )?;
    writeln!(out, "\nhosts")?;
    let rows: Vec<Vec<String>> =
        s.hosts.iter().map(|(c, n)| vec![condition_name(*c).into(), n.to_string()]).collect();
    table(&mut out, &["condition", "hosts"], &rows)?;
    if !s.errors.is_empty() {
        writeln!(out, "\nfile errors")?;
        let rows: Vec<Vec<String>> = s.errors.iter().map(|(c, n)| vec![c.clone(), n.to_string()]).collect();
        table(&mut out, &["code", "files"], &rows)?;
    }
    Ok(())
}

fn host_cells(h: &HostRow) -> Vec<String> {
    vec![
        h.host_id.to_string(),
        h.host_uid.clone().unwrap_or_default(),
        format!("{}:{}", h.address.clone().unwrap_or_default(), h.port.unwrap_or(22)),
        condition_name(h.condition).into(),
        h.task_status.map(crate::store::status::name).unwrap_or("-").into(),
        h.pending_backup.to_string(),
        h.backup_error.to_string(),
        h.pending_processing.to_string(),
        h.processing_error.to_string(),
        h.processed.to_string(),
        h.last_backup.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "never".into()),
    ]
}

/// `appcataloga hosts list` / `hosts show ID`.
///
/// # Errors
/// Database failures, or an unknown host for `show`.
pub async fn hosts(store: &Store, host_id: Option<i32>, as_json: bool) -> anyhow::Result<()> {
    let hosts = store.list_hosts(host_id).await.context("listing hosts")?;
    if let Some(id) = host_id {
        anyhow::ensure!(!hosts.is_empty(), "host {id} is unknown");
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        return json(&mut out, &hosts);
    }
    if let (Some(_), Some(h)) = (host_id, hosts.first()) {
        writeln!(out, "host {} ({})", h.host_id, h.host_uid.as_deref().unwrap_or("?"))?;
        writeln!(
            out,
            "  address      {}:{}  user {}",
            h.address.as_deref().unwrap_or("?"),
            h.port.unwrap_or(22),
            h.user.as_deref().unwrap_or("?")
        )?;
        writeln!(out, "  password     {}", if h.has_password { "stored (sealed)" } else { "none" })?;
        writeln!(out, "  host key     {}", h.host_key.as_deref().unwrap_or("not pinned yet"))?;
        writeln!(
            out,
            "  condition    {}{}",
            condition_name(h.condition),
            h.condition_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )?;
        writeln!(
            out,
            "  backup task  {}{}",
            h.task_status.map(crate::store::status::name).unwrap_or("none"),
            h.task_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )?;
        writeln!(
            out,
            "  files        {} to copy, {} copy errors, {} to catalogue, {} catalogue errors, {} catalogued",
            h.pending_backup, h.backup_error, h.pending_processing, h.processing_error, h.processed
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = hosts.iter().map(host_cells).collect();
    table(
        &mut out,
        &[
            "id",
            "uid",
            "address",
            "condition",
            "backup",
            "to copy",
            "copy err",
            "to catalogue",
            "cat err",
            "catalogued",
            "last backup",
        ],
        &rows,
    )?;
    Ok(())
}

/// `appcataloga hosts set-credentials`.
///
/// # Errors
/// Database failures; a password without a configured key.
#[allow(clippy::too_many_arguments)]
pub async fn set_credentials(
    store: &Store,
    key: Option<&StationKey>,
    host_id: i32,
    uid: Option<&str>,
    address: Option<&str>,
    port: Option<u16>,
    user: Option<&str>,
    password: Option<SecretString>,
) -> anyhow::Result<()> {
    store.upsert_host(host_id, uid, address, port, user, password.as_ref(), key).await?;
    println!(
        "host {host_id}: access data updated{}",
        if password.is_some() { " (password sealed)" } else { "" }
    );
    Ok(())
}

/// `appcataloga hosts import CSV`: the original's node list, `id,uid,address,user,password`
/// (an optional header and an optional sixth `port` column). Returns rows imported.
///
/// # Errors
/// Unreadable file, a malformed line (with its number), database failures.
pub async fn import_hosts(store: &Store, key: Option<&StationKey>, path: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if i == 0 && f.first().is_some_and(|c| c.parse::<i32>().is_err()) {
            continue; // header
        }
        anyhow::ensure!(
            f.len() >= 5,
            "{}:{}: expected id,uid,address,user,password[,port]",
            path.display(),
            i + 1
        );
        let id: i32 = f[0]
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .with_context(|| format!("{}:{}: bad host id {:?}", path.display(), i + 1, f[0]))?;
        let port = match f.get(5) {
            Some(p) if !p.is_empty() => Some(
                p.parse::<u16>().with_context(|| format!("{}:{}: bad port {p:?}", path.display(), i + 1))?,
            ),
            _ => None,
        };
        rows.push((id, f[1].to_string(), f[2].to_string(), f[3].to_string(), f[4].to_string(), port));
    }
    let total = rows.len();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (n, (id, uid, address, user, password, port)) in rows.into_iter().enumerate() {
        let pw = (!password.is_empty()).then(|| SecretString::from(password));
        store.upsert_host(id, Some(&uid), Some(&address), port, Some(&user), pw.as_ref(), key).await?;
        if tty {
            eprint!("\rhosts: {}/{total}", n + 1);
        }
    }
    if tty {
        eprintln!();
    }
    println!("imported {total} hosts from {}", path.display());
    Ok(total)
}

/// `appcataloga tasks list`.
///
/// # Errors
/// Database failures.
pub async fn list_tasks(
    store: &Store,
    status: Option<i8>,
    filter: TaskFilter,
    limit: u32,
    as_json: bool,
) -> anyhow::Result<()> {
    let tasks: Vec<TaskRow> = store.list_tasks(status, filter, limit).await?;
    let mut out = std::io::stdout().lock();
    if as_json {
        return json(&mut out, &tasks);
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.kind.into(),
                t.id.to_string(),
                t.host_id.to_string(),
                match (t.kind, t.task_type) {
                    ("HOST", _) => "backup".into(),
                    (_, 1) => "copy".into(),
                    _ => "process".into(),
                },
                crate::store::status::name(t.status).into(),
                t.error_code.clone().unwrap_or_default(),
                t.file.clone().unwrap_or_default(),
                t.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&mut out, &["kind", "id", "host", "stage", "status", "code", "file", "message"], &rows)?;
    Ok(())
}
