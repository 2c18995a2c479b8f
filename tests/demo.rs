//! `ebs-csi demo` end to end, as a user runs it.

use std::process::Command;

fn ours_left(pid: u32) -> (String, String) {
    let marker = format!("ebs-csi-demo-{pid}");
    let loops = String::from_utf8_lossy(&Command::new("losetup").arg("-a").output().unwrap().stdout).into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let grep = |text: &str| {
        text.lines()
            .filter(|l| l.contains(&marker))
            .collect::<Vec<_>>()
            .join("\n")
    };
    (grep(&loops), grep(&mounts))
}

#[test]
fn demo_runs_the_whole_life_cycle_and_leaves_nothing() {
    let child = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "CreateVolume               CREATED",
        "ControllerPublishVolume    NODE_READY",
        "NodeStageVolume            VOL_READY",
        "NodePublishVolume          PUBLISHED",
        "write index.html",
        "NodeGetVolumeStats",
        "Expand to 20Gi",
        "CreateSnapshot",
        "read index.html (restore)",
        "DeleteVolume               deleted",
        "all steps worked",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("19."),
        "the filesystem was grown to about 20 GiB:\n{stdout}"
    );
    let (loops, mounts) = ours_left(pid);
    assert!(loops.is_empty() && mounts.is_empty(), "left behind:\n{loops}\n{mounts}");
}

#[test]
fn demo_without_root_says_why_and_exits_2() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("demo")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear sentence: {stderr}");
}
