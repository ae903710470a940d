//! Holding no secrets, provably: a canary password and a canary Vault token go through every
//! path (success, check, env, each failure, JSON logs) and never come out; the launcher is not
//! dumpable and has no core limit while it runs, and the app gets its own core limit back.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Fixture, Run, bao::ROOT_TOKEN, canary, is_root, services, unique};

/// Every file under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn canaries_never_leave_through_any_path() {
    let s = services();
    let f = Fixture::new();
    // A Vault token that is itself a canary: root may choose a token's id.
    let token = format!("canary-token-{}", unique("t"));
    s.bao.api("POST", "/v1/auth/token/create", Some(&serde_json::json!({"id": token, "policies": ["root"]})));
    let bad_json = unique("badjson");
    s.bao.put_kv2(&format!("tests/{bad_json}"), &serde_json::json!({"blob": format!("{{not json {}", f.password)}));
    let closed = support::free_port_pair().to_string();
    let other_ca = format!("file:{}", s.certs.other_ca.display());
    let creds = f.credentials();
    let ca = f.ca();
    let scenarios: Vec<(&str, Vec<String>, i32)> = vec![
        ("success", vec!["--".into(), "true".into()], 0),
        ("check", vec!["check".into()], 0),
        ("env", vec!["env".into()], 0),
        ("env json", vec!["env".into(), "--format".into(), "json".into()], 0),
        (
            "passfile + url",
            vec!["--password-via".into(), "passfile".into(), "--database-url".into(), "--".into(), "true".into()],
            0,
        ),
        ("supervise", vec!["--supervise".into(), "--".into(), "true".into()], 0),
        (
            "supervise, passfile in place",
            vec![
                "--supervise".into(),
                "--password-via".into(),
                "passfile".into(),
                "--on-change".into(),
                "passfile".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "exit 3".into(),
            ],
            3,
        ),
        ("wrong CA", vec!["--ca".into(), other_ca, "--".into(), "true".into()], 76),
        ("host mismatch", vec!["--host".into(), "127.0.0.2".into(), "--".into(), "true".into()], 76),
        ("database down", vec!["--port".into(), closed.clone(), "--".into(), "true".into()], 69),
        ("missing field", vec!["--ca".into(), format!("{creds}#nope"), "--".into(), "true".into()], 65),
        (
            "malformed JSON",
            vec!["--credentials".into(), format!("vault:secret/tests/{bad_json}#blob"), "--".into(), "true".into()],
            65,
        ),
        ("no such file", vec!["--ca".into(), "file:/nonexistent/ca.pem".into(), "--".into(), "true".into()], 73),
        ("command not found", vec!["--".into(), "/nonexistent/app".into()], 127),
    ];
    for (name, args, code) in scenarios {
        for json in [false, true] {
            let mut cmd = support::launcher(&f.home);
            cmd.env("VAULT_ADDR", &s.bao.addr).env("VAULT_TOKEN", &token);
            let (sub, rest) = match args.first().map(String::as_str) {
                Some("check" | "env") => (vec![args[0].clone()], args[1..].to_vec()),
                _ => (vec![], args.clone()),
            };
            cmd.args(&sub).args(["--credentials", &creds, "--ca", &ca]);
            if json {
                cmd.args(["--log-format", "json"]);
            }
            let run = Run::of(cmd.args(&rest));
            assert_eq!(run.code, code, "{name} (json logs: {json}):\n{run}");
            run.assert_no_leak(&f.password).assert_no_leak(&token);
            if json {
                for line in run.stderr.lines() {
                    let v: serde_json::Value =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
                    assert!(v["level"].is_string() && v["message"].is_string(), "{name}: {line}");
                }
            }
        }
    }
    // Store down and 403, with the canary token in hand.
    let mut down = f.launcher();
    down.env("VAULT_ADDR", format!("http://127.0.0.1:{closed}")).env("VAULT_TOKEN", &token).args(["--", "true"]);
    Run::of(&mut down).assert_fails(69, "cannot reach Vault").assert_no_leak(&token).assert_no_leak(&f.password);
    let weak = s.bao.weak_token();
    Run::of(f.launcher().env("VAULT_TOKEN", &weak).args(["--", "true"]))
        .assert_fails(77, "permission denied")
        .assert_no_leak(&weak)
        .assert_no_leak(&f.password);
    // A config file with a password where none belongs: refused without echoing it.
    let config = f.home.join("bad.toml");
    std::fs::write(&config, format!("password = \"{}\"\n", f.password.replace('\\', "\\\\").replace('"', "\\\"")))
        .unwrap();
    Run::of(f.launcher().arg("--config").arg(&config).args(["--", "true"]))
        .assert_fails(78, "unknown field `password`")
        .assert_no_leak(&f.password);
    std::fs::remove_file(&config).unwrap();
    // Nothing written outside the runtime directories (which live under /dev/shm here).
    assert_eq!(files_containing(&f.home, &f.password), Vec::<String>::new());
    assert_eq!(files_containing(&f.home, &token), Vec::<String>::new());
    let _ = ROOT_TOKEN;
}

#[test]
fn the_app_gets_its_core_limit_back() {
    let f = Fixture::new();
    // Exec'd, and started as a child (--supervise, which keeps its own limit at 0).
    for mode in [&[][..], &["--supervise"][..]] {
        let mut cmd = Command::new("sh");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &f.home)
            .env("VAULT_ADDR", &services().bao.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .args(["-c", "ulimit -c 12345 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_launcher")])
            .args(mode)
            .args(["--credentials", &f.credentials(), "--ca", &f.ca(), "--", "sh", "-c", "ulimit -c"]);
        let run = Run::of(&mut cmd);
        run.assert_ok().assert_no_leak(&f.password);
        assert_eq!(run.stdout.trim(), "12345", "{mode:?}: {run}");
    }
}

#[test]
fn while_it_holds_secrets_the_launcher_is_not_dumpable_and_dumps_no_core() {
    let s = services();
    let home = support::home(&unique("dump"));
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A copy of the binary anyone can run, so that it can run as another user: only then does
    // /proc show non-dumpability (its /proc/PID/* files belong to root instead of that user).
    let binary = home.join("launcher");
    std::fs::copy(env!("CARGO_BIN_EXE_launcher"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(&binary);
    cmd.env_clear()
        .env("HOME", &home)
        .env("PGHOST", "localhost")
        .env("PGPORT", support::free_port_pair().to_string())
        .env("PGUSER", "nobody-here")
        .env("PGPASSWORD", canary())
        .env("PGSSLROOTCERT", &s.certs.ca)
        .args(["check", "--wait", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let other_user = is_root();
    if other_user {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let mut child = support::KillOnDrop(cmd.spawn().unwrap());
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let limits = loop {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap_or_default().to_owned();
        if core.split_whitespace().nth(4) == Some("0") || Instant::now() > deadline {
            break core;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(limits.split_whitespace().nth(4), Some("0"), "soft core limit while running: {limits}");
    if other_user {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.lines().any(|l| l.starts_with("Uid:\t65534")), "{status}");
        // /proc computes the owner when it looks an entry up: poll while the launcher waits.
        let deadline = Instant::now() + Duration::from_secs(10);
        let owner = loop {
            let owner = std::fs::metadata(format!("/proc/{pid}/environ")).unwrap().uid();
            if owner == 0 || Instant::now() > deadline {
                break owner;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(owner, 0, "a non-dumpable process's /proc entries belong to root");
    } else {
        eprintln!("not root: dumpability is checked only when the tests can run the launcher as another user");
    }
    let _ = child.0.kill();
}

#[test]
fn a_file_that_cannot_be_written_takes_the_runtime_directory_with_it() {
    let f = Fixture::new();
    let base = f.home.join("run");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A file-size limit of one block (SIGXFSZ ignored, so that the write fails with EFBIG
    // instead of killing the process): the CA bundle cannot be written whole.
    let cmd = f.launcher();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new("sh");
    wrapped
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .env("XDG_RUNTIME_DIR", &base)
        .args(["-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\""])
        .arg(program)
        .args(args)
        .args(["--password-via", "passfile", "--", "true"]);
    Run::of(&mut wrapped).assert_fails(73, "root.crt").assert_no_leak(&f.password);
    let left: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
