//! End-to-end checks of the `dinonat` binary: the commands a user runs first.

use std::process::Command;

fn dinonat(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .args(args)
        .output()
        .expect("the dinonat binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_reports_the_kernel_path_and_threads() {
    let (ok, stdout, stderr) = dinonat(&["info"]);
    assert!(ok, "dinonat info failed: {stderr}");
    let detected = dinonat_kernels::cpu::isa::detected().name();
    assert!(
        stdout.contains(detected),
        "info does not name the detected ISA {detected}:\n{stdout}"
    );
    assert!(
        stdout.contains("threads"),
        "info does not report threads:\n{stdout}"
    );
}

/// `dinonat info | head -1`: the reader goes away before the output ends; dinonat must end quietly
/// (SIGPIPE, as other Unix tools), never with a panic message.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .arg("info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dinonat binary runs");
    drop(child.stdout.take()); // the reader is gone before the first line is written
    let out = child.wait_with_output().expect("dinonat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "dinonat info on a closed pipe: {stderr}"
    );
}

#[test]
fn bench_gemm_json_reports_each_requested_shape() {
    let (ok, stdout, stderr) = dinonat(&[
        "bench",
        "gemm",
        "--json",
        "--threads",
        "1",
        "--shape",
        "33x17x65",
        "--shape",
        "64x64x64",
        "--layout",
        "tn",
    ]);
    assert!(ok, "bench gemm failed: {stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each --json line is a JSON object"))
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "expected one JSON object per shape:\n{stdout}"
    );
    assert_eq!(
        (
            rows[0]["m"].as_u64(),
            rows[0]["k"].as_u64(),
            rows[0]["n"].as_u64()
        ),
        (Some(33), Some(17), Some(65))
    );
    assert_eq!(rows[1]["m"].as_u64(), Some(64));
    for row in &rows {
        assert_eq!(row["layout"].as_str(), Some("tn"), "{row}");
        let gflops = row["gflops"].as_f64().expect("gflops is a number");
        assert!(
            gflops.is_finite() && gflops > 0.0,
            "gflops must be a positive measurement: {row}"
        );
    }
}

#[test]
fn bench_gemm_rejects_an_unknown_layout_naming_the_flag() {
    let (ok, _stdout, stderr) = dinonat(&["bench", "gemm", "--layout", "tt"]);
    assert!(!ok, "--layout tt must fail");
    assert!(
        stderr.contains("--layout") && stderr.contains("tn"),
        "the error must name the flag and the choices: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "must not panic: {stderr}");
}

#[test]
fn bench_gemm_rejects_a_malformed_shape_naming_the_flag() {
    let (ok, _stdout, stderr) = dinonat(&["bench", "gemm", "--shape", "12x3"]);
    assert!(!ok, "a malformed --shape must fail");
    assert!(
        stderr.contains("--shape"),
        "the error must name the flag: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "must not panic: {stderr}");
}
