//! Builds on a developer's machine: the same commit gives the same images whatever the checkout's
//! path and `CARGO_HOME`, so a laptop's images are CI's; `build --load` puts them into the local
//! Docker (20.10 and 26) or podman, to run; the pre-push hook builds what a push changes.

use std::path::Path;
use std::process::Command;

use crate::support::docker::Engine;
use crate::support::harness::{require_tool, run, stderr, stdout, Scratch};

/// The digest of the index `build` wrote for `app`.
pub fn built_digest(scratch: &Scratch, app: &str) -> String {
    let index = std::fs::read(scratch.path().join("target/xtask/oci").join(app).join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// A `CARGO_HOME` of its own, holding a copy of the machine's registry index and downloaded
/// crates (the tests never reach crates.io).
pub fn copied_cargo_home(into: &Path) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"));
    std::fs::create_dir_all(into.join("registry")).unwrap();
    for part in ["index", "cache"] {
        let copied = run(Command::new("cp").arg("-a").arg(home.join("registry").join(part)).arg(into.join("registry")));
        assert!(copied.status.success(), "{}", stderr(&copied));
    }
}

#[test]
fn the_same_commit_gives_the_same_images_from_any_checkout_path_and_cargo_home() {
    let first = Scratch::new();
    let second = Scratch::clone_of(&first);
    assert_ne!(first.path(), second.path());
    let cargo_home = tempfile::tempdir().unwrap();
    copied_cargo_home(cargo_home.path());

    // hello-api has a crates.io dependency whose panic locations name its path under CARGO_HOME.
    let build = ["build", "hello-api", "worker", "--platform", "linux/amd64,linux/arm64"];
    first.xtask_ok(&build);
    let output = second.xtask_with_env(&build, &[("CARGO_HOME", cargo_home.path().to_str().unwrap()), ("CARGO_NET_OFFLINE", "true")]);
    assert!(output.status.success(), "{}", stderr(&output));
    for app in ["hello-api", "worker"] {
        assert_eq!(built_digest(&first, app), built_digest(&second, app), "{app} differs between the two checkouts");
    }
    // No host path is left in a binary.
    for scratch in [&first, &second] {
        for platform in ["linux/amd64", "linux/arm64"] {
            let binary = std::fs::read(scratch.path().join("target/stage").join(platform).join("hello-api")).unwrap();
            for host_path in [scratch.path().to_str().unwrap(), cargo_home.path().to_str().unwrap(), "/.cargo/registry"] {
                assert!(
                    !binary.windows(host_path.len()).any(|window| window == host_path.as_bytes()),
                    "{platform} hello-api holds {host_path}"
                );
            }
        }
    }
}

/// The configuration digest (what the engine calls the image ID) of `app`'s image for
/// `platform` in the layout `build` wrote.
fn built_config_digest(scratch: &Scratch, app: &str, platform: &str) -> String {
    let layout = scratch.path().join("target/xtask/oci").join(app);
    let read = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()).unwrap()
    };
    let index = read(&built_digest(scratch, app));
    let entry = index["manifests"].as_array().unwrap().iter().find(|entry| {
        format!("{}/{}", entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap()) == platform
    });
    read(entry.expect("the platform was built")["digest"].as_str().unwrap())["config"]["digest"].as_str().unwrap().to_string()
}

pub fn host_platform() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "linux/arm64"
    } else {
        "linux/amd64"
    }
}

/// Runs the worker image `image` with `engine` (`docker` or `podman` and their environment) on a
/// line of text and returns what it printed.
pub fn run_worker(mut engine: Command, image: &str) -> String {
    let mut child = engine
        .args(["run", "--rm", "-i", image])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"to be or not to be\n").unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[test]
fn build_load_puts_the_image_into_docker_and_podman_under_latest_and_the_commit() {
    let scratch = Scratch::new();
    let head = scratch.head();
    let engines: Vec<Engine> = [Engine::default_engine(), Engine::docker26()].into_iter().flatten().collect();
    for engine in &engines {
        let output = scratch.xtask_with_env(&["build", "worker", "hello-api", "--load"], &engine.env());
        assert!(output.status.success(), "{}: {}", engine.name, stderr(&output));
        for app in ["worker", "hello-api"] {
            for tag in ["latest", head.as_str()] {
                let id = run(engine.docker().args(["image", "inspect", "--format", "{{.Id}}", &format!("{app}:{tag}")]));
                assert!(id.status.success(), "{}: {app}:{tag} is not loaded: {}", engine.name, stderr(&id));
                assert_eq!(stdout(&id).trim(), built_config_digest(&scratch, app, host_platform()), "{}: {app}:{tag}", engine.name);
            }
        }
        let printed = run_worker(engine.docker(), &format!("worker:{head}"));
        assert_eq!(printed, format!("2 be\n2 to\n1 not\n1 or\napp=worker event=done words=4 platform={}\n", host_platform()));
    }

    // The HTTP app answers from the default engine, on the host's network.
    if let Some(engine) = engines.iter().find(|engine| engine.env().is_empty()) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let name = format!("xtask-load-test-{port}");
        let listen = format!("LISTEN=127.0.0.1:{port}");
        let started =
            run(engine.docker().args(["run", "--detach", "--rm", "--name", &name, "--network", "host", "-e", &listen, "hello-api:latest"]));
        assert!(started.status.success(), "{}", stderr(&started));
        let answer = http_get(port, "/healthz");
        let _ = run(engine.docker().args(["rm", "--force", &name]));
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n\r\nok\n"), "{answer}");
    }

    // Without a Docker engine, podman takes the image.
    require_tool("podman");
    let storage = tempfile::tempdir().unwrap();
    let conf = storage.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n", storage.path().display()),
    )
    .unwrap();
    let podman_env = [("DOCKER_HOST", "unix:///nonexistent/docker.sock"), ("CONTAINERS_STORAGE_CONF", conf.to_str().unwrap())];
    let output = scratch.xtask_with_env(&["build", "worker", "--load"], &podman_env);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("into podman"), "{}", stderr(&output));
    // (Running it is left to Docker: podman's runtime cannot set its rlimits in every sandbox.)
    for tag in ["latest", head.as_str()] {
        let id = run(Command::new("podman").envs(podman_env).args(["image", "inspect", "--format", "{{.Id}}", &format!("worker:{tag}")]));
        assert!(id.status.success(), "podman: worker:{tag} is not loaded: {}", stderr(&id));
        assert_eq!(format!("sha256:{}", stdout(&id).trim()), built_config_digest(&scratch, "worker", host_platform()));
    }
}

/// A GET on loopback `port`, retried while the server starts; the whole answer.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            write!(stream, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answers on port {port}");
}

/// `git` in `scratch` with `cargo` on PATH being the xtask under test (the hook runs `cargo xtask`).
fn git_with_hook(scratch: &Scratch, cargo_shim: &Path, args: &[&str]) -> std::process::Output {
    let path = format!("{}:{}", cargo_shim.display(), std::env::var("PATH").unwrap());
    run(Command::new("git")
        .current_dir(scratch.path())
        .env("PATH", path)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args))
}

#[test]
fn the_pre_push_hook_stops_a_push_whose_app_does_not_build_and_uninstalls_cleanly() {
    let scratch = Scratch::new();
    let remote = tempfile::tempdir().unwrap();
    let bare = run(Command::new("git").args(["init", "-q", "--bare"]).arg(remote.path()));
    assert!(bare.status.success(), "{}", stderr(&bare));
    scratch.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    scratch.git(&["push", "-q", "origin", "main"]);
    // `cargo xtask ARGS` runs the xtask under test.
    let shim = tempfile::tempdir().unwrap();
    std::fs::write(shim.path().join("cargo"), format!("#!/bin/sh\nshift\nexec {} \"$@\"\n", env!("CARGO_BIN_EXE_xtask"))).unwrap();
    run(Command::new("chmod").arg("755").arg(shim.path().join("cargo")));
    // A hook of the developer's own, which must keep running and come back on uninstall.
    let hooks = scratch.path().join(".git/hooks");
    let own_hook = "#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/../own-hook-ran\"\n";
    std::fs::write(hooks.join("pre-push"), own_hook).unwrap();
    run(Command::new("chmod").arg("755").arg(hooks.join("pre-push")));
    let installed = scratch.xtask_ok(&["hook", "install"]);
    assert!(installed.contains("the hook that was there runs first"), "{installed}");

    // A push that changes no app goes through without building.
    scratch.write("docs/notes.md", "notes\n");
    scratch.commit("notes");
    let pushed = git_with_hook(&scratch, shim.path(), &["push", "origin", "main"]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(stderr(&pushed).contains("pre-push: no app changed, nothing to build"), "{}", stderr(&pushed));
    assert_eq!(std::fs::read_to_string(scratch.path().join(".git/own-hook-ran")).unwrap(), "origin\n");

    // A push whose app does not compile is stopped, and the remote keeps its commit.
    let before = scratch.head();
    scratch.edit("crates/worker/src/main.rs", |text| {
        text.replace("fn main()", "fn main() { let broken: u8 = \"not a number\"; }\nfn unused()")
    });
    scratch.commit("break the worker");
    let pushed = git_with_hook(&scratch, shim.path(), &["push", "origin", "main"]);
    assert!(!pushed.status.success(), "the push went through");
    assert!(stderr(&pushed).contains("the push was stopped: worker did not build"), "{}", stderr(&pushed));
    let remote_head = run(Command::new("git").arg("--git-dir").arg(remote.path()).args(["rev-parse", "main"]));
    assert_eq!(stdout(&remote_head).trim(), before);

    // A new branch is compared with the default base: it changes the worker too.
    let branch = git_with_hook(&scratch, shim.path(), &["push", "origin", "main:topic"]);
    assert!(!branch.status.success() && stderr(&branch).contains("worker did not build"), "{}", stderr(&branch));
    // Deleting a branch builds nothing.
    scratch.git(&["push", "-q", "--no-verify", "origin", "main:doomed"]);
    let deleted = git_with_hook(&scratch, shim.path(), &["push", "origin", ":doomed"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));

    // Uninstall puts the developer's hook back as it was.
    scratch.xtask_ok(&["hook", "uninstall"]);
    assert_eq!(std::fs::read_to_string(hooks.join("pre-push")).unwrap(), own_hook);
    assert!(!hooks.join("pre-push.before-xtask").exists());
}
