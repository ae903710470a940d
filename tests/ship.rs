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

/// An example YAML file as JSON (parsed by PyYAML from the repo's .venv).
fn yaml(path: &str) -> serde_json::Value {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let file = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_compose_example_runs_its_launcher_flags_against_real_services() {
    let s = crate::support::services();
    let docs = yaml("examples/compose.yaml");
    let services = &docs[0]["services"];
    for name in ["certs", "postgres", "openbao", "seed", "app"] {
        assert!(services[name].is_object(), "service {name}");
    }
    let pg = services["postgres"]["command"][2].as_str().unwrap();
    assert!(pg.contains("hostssl all all all scram-sha-256") && pg.contains("ssl=on"), "{pg}");
    assert!(!pg.contains("\nhost "), "no plain host line");
    // The app's flags, as Compose would pass them to the launcher, against the tests' services.
    let f = crate::support::Fixture::new();
    s.bao.put_kv2(
        "app/db",
        &serde_json::json!({"username": f.role, "password": f.password, "host": "localhost", "port": s.pg.port,
            "dbname": "postgres", "ca_pem": std::fs::read_to_string(&s.certs.ca).unwrap()}),
    );
    let mut args = strings(&services["app"]["command"]);
    let program = args.iter().position(|a| a == "--").unwrap() + 1;
    args[program] = crate::support::pg::psql().display().to_string();
    let run = Run::of(
        crate::support::launcher(&f.home)
            .env("VAULT_ADDR", &s.bao.addr)
            .env("VAULT_TOKEN", crate::support::bao::ROOT_TOKEN)
            .args(&args),
    );
    run.assert_ok().assert_no_leak(&f.password);
    assert_eq!(run.stdout.trim(), "connected over TLSv1.3", "{run}");
}

#[test]
fn the_kubernetes_example_takes_the_kubernetes_login_path() {
    let docs = yaml("examples/kubernetes/deployment.yaml");
    let deployment = docs.as_array().unwrap().iter().find(|d| d["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args = strings(&container["args"]);
    let addr =
        container["env"].as_array().unwrap().iter().find(|e| e["name"] == "VAULT_ADDR").unwrap()["value"].clone();
    // Outside a pod there is no service-account token: the launcher must get as far as reading it.
    let dashes = args.iter().position(|a| a == "--").unwrap();
    args.splice(dashes..dashes, ["--vault-jwt-file".to_owned(), "/nonexistent/sa/token".to_owned()]);
    // The image's app is not installed here, and is looked up before the login.
    args.truncate(dashes + 3);
    args.push("true".to_owned());
    let h = home(&unique("k8s-example"));
    Run::of(
        crate::support::launcher(&h)
            .env("VAULT_ADDR", addr.as_str().unwrap())
            .env("VAULT_CACERT", &crate::support::services().certs.ca)
            .args(&args),
    )
    .assert_fails(73, "Kubernetes service-account token: cannot read /nonexistent/sa/token");
}
