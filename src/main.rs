//! The `appcataloga` binary: everything happens in [`appcataloga::cli`].

fn main() -> std::process::ExitCode {
    appcataloga::cli::main()
}
