//! What ships beside the binary: shell completions, the man page, and the systemd unit example.

use std::process::Command;

use crate::support::{Run, home, unique};

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let h = home(&unique("ship"));
    let bash = Run::of(crate::support::launcher(&h).args(["completions", "bash"]));
    bash.assert_ok();
    assert!(bash.stdout.contains("--credentials") && bash.stdout.contains("--vault-auth"), "{bash}");
    let script = h.join("launcher.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    for shell in ["zsh", "fish"] {
        let run = Run::of(crate::support::launcher(&h).args(["completions", shell]));
        run.assert_ok();
        assert!(run.stdout.contains("credentials"), "{shell}: {run}");
    }
    let man = Run::of(crate::support::launcher(&h).arg("man"));
    man.assert_ok();
    assert!(man.stdout.contains(".TH launcher 1"), "{man}");
    assert!(man.stdout.contains("\\-\\-password\\-via"), "every option is in the page");
}

#[test]
fn the_systemd_unit_example_verifies() {
    let h = home(&unique("unit"));
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/systemd/app.service")).unwrap();
    // systemd-analyze checks that the binaries exist: point them at the real ones.
    let unit = unit
        .replace("/usr/local/bin/launcher", env!("CARGO_BIN_EXE_launcher"))
        .replace("/usr/local/bin/app", "/bin/true");
    let path = h.join("app.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}
