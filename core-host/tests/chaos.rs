//! The bank test in CI: `nixo chaos bank` on SQLite (one server) and on
//! PostgreSQL (two replicas), each killed with SIGKILL during the load,
//! and a run that applies one transfer twice on purpose, which the checks
//! must catch. CI runs the small size; the README gives the full one
//! (`NIXO_CHAOS_OPERATIONS`, `NIXO_CHAOS_CLIENTS`, `NIXO_CHAOS_KILLS` set
//! the size here too).

mod common;

use common::NIXO;
use std::process::Command;

fn size(name: &str, default: usize) -> String {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
        .to_string()
}

/// Runs `nixo chaos bank` with `args`; (exit code, what it printed).
fn chaos(args: &[&str]) -> (Option<i32>, String) {
    // The run's directories go in the test's own (a failed run keeps them).
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(NIXO)
        .args(["chaos", "bank", "--work-dir"])
        .arg(work.path())
        .args(args)
        .env("NIXO_LOG", "warn")
        .output()
        .expect("nixo runs");
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

fn ci_size() -> Vec<String> {
    vec![
        "--clients".into(),
        size("NIXO_CHAOS_CLIENTS", 8),
        "--operations".into(),
        size("NIXO_CHAOS_OPERATIONS", 5_000),
        "--kills".into(),
        size("NIXO_CHAOS_KILLS", 3),
    ]
}

fn assert_sound(code: Option<i32>, printed: &str) {
    println!("{printed}");
    assert_eq!(code, Some(0), "the bank test found violations:\n{printed}");
    assert!(printed.contains("violations 0"), "{printed}");
    let kills = printed
        .split("kills ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(
        kills,
        size("NIXO_CHAOS_KILLS", 3).parse().ok(),
        "every kill happened: {printed}"
    );
}

#[test]
fn the_bank_test_passes_on_sqlite_with_the_server_killed() {
    let args = ci_size();
    let (code, printed) = chaos(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_sound(code, &printed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_test_passes_on_postgres_with_two_replicas_killed() {
    let Some(url) = common::postgres_database("chaos").await else {
        return;
    };
    let mut args = ci_size();
    args.extend(["--database-url".into(), url.clone(), "--replicas".into(), "2".into()]);
    let (code, printed) =
        tokio::task::spawn_blocking(move || chaos(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
    common::drop_postgres_database(&url).await;
    assert_sound(code, &printed);
}

#[test]
fn a_transfer_applied_twice_is_caught() {
    let (code, printed) = chaos(&["--clients", "4", "--operations", "300", "--kills", "0", "--sabotage"]);
    println!("{printed}");
    assert_eq!(code, Some(2), "{printed}");
    assert!(printed.contains("money not conserved"), "{printed}");
    assert!(printed.contains("operations applied twice or unasked"), "{printed}");
}
