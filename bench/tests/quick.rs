//! The quick mode end to end: a debug hub, every scenario, every answer checked. It asserts that
//! everything ran and answered correctly, never a speed.

use std::process::Command;

#[test]
fn quick_mode_runs_every_scenario_correctly() {
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub-bench")).arg("quick").output().expect("cityhub-bench starts");
    let report = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quick mode failed ({}):\n{log}\n{report}", output.status);
    assert!(report.contains("## Closed loop"), "a report:\n{report}");
}

#[test]
fn an_unknown_store_is_refused_before_anything_runs() {
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub-bench"))
        .args(["quick", "--hub-bin", "/nonexistent/cityhub", "--store", "mysql://db/x"])
        .output()
        .expect("cityhub-bench starts");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error:\n{log}");
    assert!(log.contains("--store \"mysql://db/x\": use sqlite, postgres or postgres://USER@HOST:PORT/DB"), "{log}");
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub-bench"))
        .args(["quick", "--hub-bin", "/nonexistent/cityhub", "--store", "postgres,postgres://u@h/d"])
        .output()
        .expect("cityhub-bench starts");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error:\n{log}");
    assert!(log.contains("--store names PostgreSQL twice"), "{log}");
}
