//! `ebs-csi demo` run as a user runs it, for the demo's tests. A run is checked for what it left
//! behind (loop devices, mounts, its temp dir), and whatever it left is unmounted and detached when
//! the run is dropped, so a failed run or a failed assertion leaves the host clean too.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::support::{loops_under, mounts_under};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One finished `ebs-csi demo`; its leftovers are removed on drop.
pub struct Run {
    pub out: Output,
    /// The demo's pid: its temp dir is `ebs-csi-demo-<pid>`.
    pub pid: u32,
    pub args: Vec<String>,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).trim().to_owned()
    }

    fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("ebs-csi-demo-{}", self.pid))
    }

    /// Loop devices and mounts under this demo's temp dir, and the dir itself.
    pub fn left_behind(&self) -> String {
        let dir = self.dir();
        let mut found: Vec<String> = loops_under(&dir)
            .into_iter()
            .map(|(dev, file)| format!("{} on {}", dev.display(), file.display()))
            .chain(mounts_under(&dir).into_iter().map(|m| format!("mount {}", m.display())))
            .collect();
        if dir.exists() {
            found.push(format!("the demo's temp dir {}", dir.display()));
        }
        found.join("\n")
    }

    /// The output lines from the first one containing `marker` on.
    pub fn after(&self, marker: &str) -> String {
        let out = self.stdout();
        match out.find(marker) {
            Some(at) => out[at..].to_owned(),
            None => panic!("{:?}: no {marker:?} in:\n{out}", self.args),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let dir = self.dir();
        for target in mounts_under(&dir) {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        }
        for (dev, _) in loops_under(&dir) {
            let _ = Command::new("losetup").arg("--detach").arg(&dev).status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Runs `ebs-csi demo ARGS…` in the repository (so `examples/…` names the examples).
pub fn demo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_ebs-csi"))
        .arg("demo")
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    Run {
        out,
        pid,
        args: args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect(),
    }
}

/// A step line as the demo prints it (after its time): name, state, facts in columns.
pub fn step(name: &str, state: &str, facts: &str) -> String {
    format!("{name:<26} {state:<11} {facts}")
}

/// Runs the demo, which must succeed, print every `expect`ed step and "all steps worked", and
/// leave nothing behind.
pub fn play<S: AsRef<str>>(args: &[&str], expect: &[S]) -> Run {
    let run = demo(args);
    let stdout = run.stdout();
    assert!(
        run.out.status.success(),
        "demo {args:?} failed:\n{stdout}\n{}",
        run.stderr()
    );
    for step in expect.iter().map(AsRef::as_ref).chain(["all steps worked"]) {
        assert!(stdout.contains(step), "demo {args:?}: missing {step:?} in:\n{stdout}");
    }
    let left = run.left_behind();
    assert!(left.is_empty(), "demo {args:?} left behind:\n{left}");
    run
}

/// Runs the demo, which must refuse the YAML before anything is made: exit status 1, one line
/// on stderr saying each of `says`, nothing played, nothing left.
pub fn refused<S: AsRef<std::ffi::OsStr>>(args: &[S], says: &[&str]) -> Result<(), String> {
    let run = demo(args);
    let stderr = run.stderr();
    let mut wrong = Vec::new();
    if run.out.status.code() != Some(1) {
        wrong.push(format!("exit status {:?}, not 1", run.out.status.code()));
    }
    for s in says {
        if !stderr.contains(s) {
            wrong.push(format!("the error does not say {s:?}"));
        }
    }
    if stderr.lines().count() != 1 {
        wrong.push("the error is not one line".into());
    }
    if !run.out.stdout.is_empty() {
        wrong.push(format!("it started playing:\n{}", run.stdout()));
    }
    let left = run.left_behind();
    if !left.is_empty() {
        wrong.push(format!("it made something: {left}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n  stderr: {stderr}", wrong.join("; ")))
    }
}
