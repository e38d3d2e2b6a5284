//! Skeleton: this function is built in a later issue. Until then it refuses to start
//! rather than acknowledge (and so lose) anything it would be given.

fn main() -> std::process::ExitCode {
    eprintln!(
        "{} is not implemented yet: deploy only the webhook for now",
        env!("CARGO_PKG_NAME")
    );
    std::process::ExitCode::FAILURE
}
