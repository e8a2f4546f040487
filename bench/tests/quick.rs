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
