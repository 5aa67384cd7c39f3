//! The Docker engines the tests build with: the machine's (Debian bookworm's 20.10, the legacy
//! builder), and the second one tests/ci.sh starts from Debian trixie's packages (26, with the
//! buildx plugin, so builds go through BuildKit and `docker save` writes an OCI layout). The
//! second engine lives in its own network namespace, so that its bridge setup leaves the first
//! engine's alone; a registry on the host's loopback reaches it through a forwarder. A third,
//! Docker 26 again with the containerd image store, lends its BuildKit (which can export OCI
//! archives) to buildx's `remote` driver: BuildKit outside the engine, as a `docker-container`,
//! Kubernetes or cloud builder is.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::harness::{Registry, Scratch};

/// A Docker engine: the `docker` command's environment that reaches it, and what it needs.
pub struct Engine {
    pub name: &'static str,
    host: Option<String>,
    /// The buildx CLI plugin, to put in the scratch workspace's Docker configuration.
    buildx: Option<PathBuf>,
    /// The network namespace the engine runs in, when not the tests' own.
    netns: Option<PathBuf>,
}

impl Engine {
    /// The engine `docker` reaches by default. `None` (the test then skips) when none answers,
    /// unless the machine must have one (`XTASK_TEST_REQUIRE_DOCKER`, set by tests/ci.sh).
    pub fn default_engine() -> Option<Engine> {
        Engine { name: "the default Docker engine", host: None, buildx: None, netns: None }
            .answering("XTASK_TEST_REQUIRE_DOCKER", "`docker info` fails")
    }

    /// Docker 26, as tests/ci.sh starts it: `XTASK_TEST_DOCKER26` is its socket, with
    /// `XTASK_TEST_DOCKER26_BUILDX` (the plugin) and `XTASK_TEST_DOCKER26_NETNS` (its namespace).
    pub fn docker26() -> Option<Engine> {
        let Some(host) = std::env::var_os("XTASK_TEST_DOCKER26") else {
            eprintln!("XTASK_TEST_DOCKER26 is not set (tests/ci.sh sets it): skipping the Docker 26 test");
            return None;
        };
        let engine = Engine {
            name: "Docker 26",
            host: Some(host.to_string_lossy().into_owned()),
            buildx: std::env::var_os("XTASK_TEST_DOCKER26_BUILDX").map(PathBuf::from),
            netns: std::env::var_os("XTASK_TEST_DOCKER26_NETNS").map(PathBuf::from),
        };
        Some(engine.answering("XTASK_TEST_DOCKER26", "the engine it names does not answer").expect("XTASK_TEST_DOCKER26 answers"))
    }

    /// Docker 26 with the containerd image store, as tests/ci.sh starts it beside the other:
    /// `XTASK_TEST_DOCKER26_CONTAINERD` is its socket, `XTASK_TEST_DOCKER26_CONTAINERD_NETNS` its
    /// network namespace.
    pub fn docker26_containerd_store() -> Option<Engine> {
        let docker26 = Engine::docker26()?;
        let Some(host) = std::env::var_os("XTASK_TEST_DOCKER26_CONTAINERD") else {
            eprintln!("XTASK_TEST_DOCKER26_CONTAINERD is not set (tests/ci.sh sets it): skipping the remote BuildKit test");
            return None;
        };
        let engine = Engine {
            name: "Docker 26 with the containerd image store",
            host: Some(host.to_string_lossy().into_owned()),
            netns: std::env::var_os("XTASK_TEST_DOCKER26_CONTAINERD_NETNS").map(PathBuf::from),
            ..docker26
        };
        Some(
            engine
                .answering("XTASK_TEST_DOCKER26_CONTAINERD", "the engine it names does not answer")
                .expect("XTASK_TEST_DOCKER26_CONTAINERD answers"),
        )
    }

    /// Makes a buildx builder of the `remote` driver named `name` in the scratch's Docker
    /// configuration, whose BuildKit is this engine's own: buildx reaches a remote BuildKit by its
    /// gRPC API, which the engine serves on its socket after an HTTP upgrade (`POST /grpc`, what
    /// buildx's `docker` driver asks for). A proxy in the scratch directory makes that upgrade for
    /// each connection and then passes the bytes through, for as long as the tests run.
    pub fn remote_builder(&self, scratch: &Scratch, name: &str) {
        let engine_socket = self.host.as_deref().and_then(|host| host.strip_prefix("unix://")).expect("a unix socket").to_string();
        let socket = scratch.docker_config().join("buildkit.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(mut engine) = UnixStream::connect(&engine_socket) else { continue };
                if upgrade_to_grpc(&mut engine).is_ok() {
                    pipe_unix(client.try_clone().unwrap(), engine.try_clone().unwrap());
                    pipe_unix(engine, client);
                }
            }
        });
        let endpoint = format!("unix://{}", socket.display());
        let output = crate::support::harness::run(
            Command::new("docker")
                .env("DOCKER_CONFIG", scratch.docker_config())
                .args(["buildx", "create", "--name", name, "--driver", "remote", &endpoint]),
        );
        assert!(output.status.success(), "docker buildx create: {}", crate::support::harness::stderr(&output));
    }

    fn answering(self, required_by: &str, failure: &str) -> Option<Engine> {
        let answers = self.docker().arg("info").output().is_ok_and(|out| out.status.success());
        if !answers {
            assert!(std::env::var_os(required_by).is_none(), "{required_by} is set but {failure}");
            eprintln!("{} does not answer: skipping", self.name);
            return None;
        }
        Some(self)
    }

    /// The environment that points `docker` (and so the xtask) at this engine.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        self.host.as_deref().map(|host| ("DOCKER_HOST", host)).into_iter().collect()
    }

    /// A `docker` command for this engine.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command.envs(self.env());
        command
    }

    /// Makes the engine usable from `scratch` (its buildx plugin in the scratch's Docker
    /// configuration) and able to pull from `registry`.
    pub fn prepare(&self, scratch: &Scratch, registry: &Registry) {
        self.install_buildx(scratch);
        if let Some(netns) = &self.netns {
            let port = registry.host.rsplit_once(':').unwrap().1.parse().unwrap();
            forward_into(netns, port);
        }
    }
}

impl Engine {
    /// Puts the engine's buildx plugin into the scratch's Docker configuration.
    pub fn install_buildx(&self, scratch: &Scratch) {
        if let Some(buildx) = &self.buildx {
            let plugins = scratch.docker_config().join("cli-plugins");
            std::fs::create_dir_all(&plugins).unwrap();
            let link = plugins.join("docker-buildx");
            if !link.exists() {
                std::os::unix::fs::symlink(buildx, link).unwrap();
            }
        }
    }

    /// An image's configuration exactly as the engine stores it (`docker save` refuses an image
    /// without layers, and `docker inspect` rewrites the configuration): read from the engine's
    /// data root, `XTASK_TEST_DOCKER26_DATA_ROOT`, which tests/ci.sh sets for Docker 26.
    pub fn raw_config(&self, image: &str) -> Vec<u8> {
        let root = std::env::var_os("XTASK_TEST_DOCKER26_DATA_ROOT").expect("XTASK_TEST_DOCKER26_DATA_ROOT is set (tests/ci.sh sets it)");
        let output = crate::support::harness::run(self.docker().args(["image", "inspect", "--format", "{{.Id}}", image]));
        assert!(output.status.success(), "docker image inspect {image}: {}", crate::support::harness::stderr(&output));
        let id = crate::support::harness::stdout(&output);
        let hex = id.trim().trim_start_matches("sha256:");
        let path = Path::new(&root).join("image/overlay2/imagedb/content/sha256").join(hex);
        std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
    }
}

/// Listens on loopback port `port` inside the network namespace `netns` and forwards every
/// connection to the same port on the tests' own loopback, for as long as the tests run. A
/// thread's network namespace is its own: the forwarding thread enters `netns` to open the
/// listener, then returns, and the sockets it opens afterwards are the host's.
fn forward_into(netns: &Path, port: u16) {
    let target = File::open(netns).unwrap_or_else(|error| panic!("cannot open {}: {error}", netns.display()));
    let (opened, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let own = File::open("/proc/thread-self/ns/net").unwrap();
        let enter = |namespace: &File| assert_eq!(unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns failed");
        enter(&target);
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("cannot listen in the engine's network namespace");
        enter(&own);
        opened.send(()).unwrap();
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { continue };
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)) else { continue };
            pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            pipe(outbound, inbound);
        }
    });
    listening.recv().unwrap();
}

/// Asks the engine on `engine` to speak BuildKit's gRPC (HTTP/2) on the connection from now on.
fn upgrade_to_grpc(engine: &mut UnixStream) -> std::io::Result<()> {
    engine.write_all(b"POST /grpc HTTP/1.1\r\nHost: docker\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")?;
    // The response head, byte by byte: what follows it is already HTTP/2, the client's to read.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        engine.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    match head.starts_with(b"HTTP/1.1 101") {
        true => Ok(()),
        false => Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned())),
    }
}

fn pipe_unix(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
