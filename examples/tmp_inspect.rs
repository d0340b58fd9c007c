//! TEMPORARY (to be deleted): prints `inspect` renderings.
fn main() {
    let json = std::env::var_os("JSON").is_some();
    for p in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(&p);
        let bytes = std::fs::read(&path).unwrap_or_default();
        match appcataloga::crfs::parse_metadata(&bytes) {
            Ok(m) if json => println!("{:#}", appcataloga::crfs::inspect::render_json(&m, Some(&path))),
            Ok(m) => print!("{}", appcataloga::crfs::inspect::render_text(&m, Some(&path))),
            Err(e) => println!("{p}: {e}"),
        }
    }
}
