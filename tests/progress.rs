//! Progress of a long `demo -f` (many objects): a spinner counting the steps on a terminal,
//! nothing on a pipe. Needs root and loop devices (the demo runs a real driver).

use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ebs-csi")
}

/// A StorageClass that binds at once and `claims` claims of it: many objects, no pod.
fn many_claims(dir: &std::path::Path, claims: usize) -> std::path::PathBuf {
    let mut yaml = String::from(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: now\n\
         provisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\nparameters:\n  type: gp3\n",
    );
    for i in 0..claims {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: claim-{i}\n\
             spec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: now\n  resources:\n    \
             requests:\n      storage: 1Gi\n"
        ));
    }
    let path = dir.join("many.yaml");
    std::fs::write(&path, yaml).expect("write yaml");
    path
}

fn script() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("script"))
        .find(|p| p.is_file())
}

#[test]
fn a_long_demo_counts_its_steps_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let yaml = many_claims(tmp.path(), 24);

    let piped = Command::new(bin())
        .arg("demo")
        .arg("-f")
        .arg(&yaml)
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&piped.stdout);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("CreateVolume").count(), 24, "{stdout}");
    assert!(
        !stdout.contains('\r') && !stderr.contains('\r'),
        "progress leaked into a pipe"
    );
    assert!(!stderr.contains("steps"), "progress leaked into a pipe: {stderr}");

    let Some(script) = script() else {
        eprintln!("SKIP (terminal half): `script` (util-linux) is not installed");
        return;
    };
    let cmd = format!("{} demo -f {}", bin(), yaml.display());
    let tty = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(screen.contains("demo 24 steps"), "no step count drawn: {screen:?}");
    // The spinner is lifted before each line, so every step line is whole.
    assert_eq!(screen.matches("CreateVolume   ").count(), 24, "{screen:?}");
    assert!(screen.contains("all steps worked"), "{screen:?}");
}

#[test]
fn a_short_demo_draws_no_spinner_even_on_a_terminal() {
    let Some(script) = script() else {
        eprintln!("SKIP: `script` (util-linux) is not installed");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let yaml = many_claims(tmp.path(), 2);
    let cmd = format!("{} demo -f {}", bin(), yaml.display());
    let tty = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(!screen.contains(" steps, "), "{screen:?}");
}
