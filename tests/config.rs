//! The TOML configuration file as a systemd unit or a Dockerfile would use it.

use crate::support::{Fixture, Run, bao::ROOT_TOKEN, launcher, pg::psql, services};

#[test]
fn a_config_file_holds_everything_and_flags_and_env_win_over_it() {
    let s = services();
    let f = Fixture::new();
    let token_file = f.home.join("vault-token");
    std::fs::write(&token_file, ROOT_TOKEN).unwrap();
    let config = f.home.join("app.toml");
    std::fs::write(
        &config,
        format!(
            "# /etc/launcher/app.toml\ncredentials = \"{}\"\nca = \"{}\"\nvault-addr = \"{}\"\n\
             vault-token-file = \"{}\"\nport = 1\nexpiry-warning = 7\nwait = \"10s\"\n",
            f.credentials(),
            f.ca(),
            s.bao.addr,
            token_file.display()
        ),
    )
    .unwrap();
    let tls_row = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    // port = 1 in the file loses to LAUNCHER_PORT, which would lose to --port.
    let run = Run::of(
        launcher(&f.home)
            .env("LAUNCHER_PORT", s.pg.port.to_string())
            .args(["--config"])
            .arg(&config)
            .arg("--")
            .arg(psql())
            .args(["-XAtc", tls_row]),
    );
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "t", "{run}");
    let run = Run::of(launcher(&f.home).env("LAUNCHER_CONFIG", &config).env("LAUNCHER_PORT", "2").args([
        "--port",
        &s.pg.port.to_string(),
        "--",
        "true",
    ]));
    run.assert_ok().assert_no_leak(&f.password);

    std::fs::write(&config, "ca = \"file:/x\"\n\n[vault]\naddr = \"https://vault\"\n").unwrap();
    Run::of(launcher(&f.home).arg("--config").arg(&config).args(["--", "true"]))
        .assert_fails(78, &format!("config {}, line 3: unknown field `vault`", config.display()));
}
