//! The only place that changes the host: loop devices, and (with the node service) mounts and
//! filesystems. Child processes get argument vectors, never a shell.

pub mod blockdev;
pub mod format;
pub mod loopdev;
pub mod mount;
pub mod nvme;
pub mod resize;
pub mod stats;

use std::ffi::OsStr;

use crate::error::{Error, Result};

/// Runs `program args…` and returns its stdout; a non-zero exit becomes an Internal error that
/// carries the program's stderr.
pub async fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_accepting(program, args, &[0]).await
}

/// As [`run`], with the exit codes that count as success (e2fsck's 1 means "errors fixed").
pub async fn run_accepting<I, S>(program: &str, args: I, ok_codes: &[i32]) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::internal(format!("cannot run {program}"), e))?;
    if !output.status.code().is_some_and(|c| ok_codes.contains(&c)) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Internal(format!(
            "{program} {} failed ({}): {}",
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            output.status,
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
