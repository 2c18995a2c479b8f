//! `ebs-csi bench` as its user runs it: the figures on stdout, a progress bar only on a
//! terminal, and `--svg DIR` charts. Needs root and loop devices (the full-cycle part mounts).

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{loops_under, mounts_under};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ebs-csi")
}

/// Whatever a failed run left under its temp dir is unmounted and detached.
struct Leftovers<'a>(&'a Path);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        for m in mounts_under(self.0).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for (dev, _) in loops_under(self.0) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
    }
}

const SMALL: [&str; 7] = ["bench", "--existing", "2,12", "--samples", "4", "--cycles", "2"];

fn piped(tmp: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(SMALL)
        .args(extra)
        .env("TMPDIR", tmp)
        .output()
        .expect("run ebs-csi bench")
}

#[test]
fn piped_bench_prints_figures_draws_charts_and_shows_no_progress() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Leftovers(tmp.path());
    let charts = tmp.path().join("charts");
    let out = piped(tmp.path(), &["--svg", charts.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("2 existing:") && stdout.contains("12 existing:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("full cycle of a fresh 1 GiB ext4 volume, median of 2"),
        "{stdout}"
    );
    // Piped: no bar, no carriage returns, no terminal escapes.
    assert!(
        !stderr.contains('\r') && !stderr.contains("\u{1b}["),
        "progress leaked into a pipe: {stderr:?}"
    );
    assert!(
        !stderr.contains("CreateVolume"),
        "progress leaked into a pipe: {stderr:?}"
    );

    for (file, words) in [
        (
            "create-latency.svg",
            &["2 existing (n=4)", "12 existing (n=4)", "latency (ms)"][..],
        ),
        (
            "create-scaling.svg",
            &["median", "90th percentile", "volumes already in the store"][..],
        ),
        ("cycle.svg", &["driver (gRPC) (n=2)", "raw commands (n=2)"][..]),
    ] {
        let path = charts.join(file);
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{file} is not an SVG document"
        );
        for w in words {
            assert!(svg.contains(w), "{file} lacks {w:?}");
        }
        // A curve was drawn, not only axes.
        assert!(svg.contains("<polyline"), "{file} has no curve");
        assert!(stdout.contains(&format!("drew {}", path.display())), "{stdout}");
    }
    // The bench cleaned up after itself: no mount, loop device or temp data left.
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "mounts left: {:?}",
        mounts_under(tmp.path())
    );
    assert!(loops_under(tmp.path()).is_empty(), "loop devices left");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read tmp")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "charts")
        .collect();
    assert!(left.is_empty(), "bench left {left:?}");
}

#[test]
fn on_a_terminal_bench_shows_progress_and_clears_it() {
    let Ok(script) = which("script") else {
        eprintln!("SKIP: `script` (util-linux) is not installed; it gives the bench a terminal");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Leftovers(tmp.path());
    // script(1) runs the bench on a pseudo-terminal and copies what it drew to stdout.
    let cmd = format!("{} {}", bin(), SMALL.join(" "));
    let out = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench on a terminal failed: {screen}");
    assert!(
        screen.contains("timing at 12 existing"),
        "no progress drawn: {screen:?}"
    );
    assert!(screen.contains("full volume cycles"), "no progress drawn: {screen:?}");
    // Every CreateVolume of the run was counted: 2 fills + 4 timed, 6 more fills + 4 timed.
    assert!(screen.contains("16/16"), "the bar did not reach its end: {screen:?}");
    // The bar is erased before the figures print, so they stand on clean lines.
    assert!(screen.contains("\u{1b}[2KCreateVolume on local"), "{screen:?}");
}

#[test]
fn an_svg_dir_that_cannot_be_made_fails_before_measuring() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let out = piped(tmp.path(), &["--svg", file.join("charts").to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--svg"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "measured anyway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
