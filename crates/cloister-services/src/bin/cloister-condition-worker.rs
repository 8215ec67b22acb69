//! The condition worker as a program of its own, for the services' tests (the server runs
//! `cloister condition-worker`, the same code).

fn main() -> std::process::ExitCode {
    cloister_services::federation::judge::worker_main()
}
