//! TEMPORARY (to be deleted): runs the CRFS benchmark until `appcataloga bench crfs` is wired.
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let generate_mb = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let iterations = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let files = args.map(std::path::PathBuf::from).collect();
    appcataloga::bench_crfs::run(&appcataloga::bench_crfs::CrfsBenchArgs {
        files,
        generate_mb,
        iterations,
        rfpye_python: std::env::var_os("RFPYE_PYTHON").map(Into::into),
    })
}
