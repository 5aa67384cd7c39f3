//! Bad input: each case asserts the exit code and the message a user sees.

use crate::support::harness::{stderr, Registry, Scratch};
use crate::support::proxy::{Fault, FaultProxy};

struct Case<'a> {
    args: Vec<String>,
    /// Applied to a fresh, committed scratch workspace before the command runs.
    setup: &'a dyn Fn(&Scratch),
    expected: &'a str,
}

/// Runs the xtask and checks that it fails with exit code 2 and a message containing `expected`.
/// A builder stage and a runtime stage that copies a file of the build context too.
const STAGE_READS_CONTEXT: &str = "FROM rust AS builder\nWORKDIR /src\nCOPY . .\nRUN cargo build --release -p worker\nFROM scratch\nCOPY --from=builder /src/target/release/worker /worker\nCOPY Cargo.toml /etc/worker.toml\n";

fn check(scratch: &Scratch, args: &[String], expected: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = scratch.xtask(&args);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "cargo xtask {args:?} should fail with 2:\n{message}");
    assert!(message.contains(expected), "cargo xtask {args:?}:\nexpected: {expected}\nfound:    {message}");
    assert_eq!(message.trim().lines().filter(|line| line.starts_with("error:")).count(), 1, "one error paragraph: {message}");
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_input_gets_a_clear_error() {
    let registry = Registry::start_with_auth("ci", "right-password");
    let protected = format!("{}/acme/prod", registry.host);
    let nothing = &|_: &Scratch| {};
    let cases = [
        Case {
            args: args(&["merge", "Cargo.toml"]),
            setup: nothing,
            expected: "Cargo.toml is not what `release --by-digest` prints: save that command's standard output and pass the file",
        },
        Case {
            args: args(&["release", "worker", "--sign", "/dev/null", "--repository", "oci:target/signed"]),
            setup: nothing,
            expected: "--sign /dev/null: the signing key is not a PEM ECDSA P-256 private key (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, or cosign's encrypted cosign.key): make one with `cosign generate-key-pair`",
        },
        Case {
            args: args(&["verify", "worker", "--key", "/dev/null", "--repository", "oci:target/signed"]),
            setup: nothing,
            expected: "--key /dev/null: the key is not a PEM ECDSA P-256 public key (`PUBLIC KEY`, as cosign.pub)",
        },
        Case {
            args: args(&["release", "worker", "--max-critical", "0", "--advisory-db", "Cargo.toml", "--repository", "oci:target/gated"]),
            setup: nothing,
            expected: "Cargo.toml is not a RustSec advisory database (a checkout of rustsec/advisory-db)",
        },
        Case {
            args: args(&["release", "nope"]),
            setup: nothing,
            expected: "unknown app `nope`: the workspace's apps are base, hello-api, worker",
        },
        Case {
            args: args(&["build", "worker", "--load", "--platform", "linux/amd64,linux/arm64"]),
            setup: nothing,
            expected: "--load puts one platform's image into the engine, and --platform names several: name one (or none, for this machine's)",
        },
        Case {
            args: args(&["build", "common"]),
            setup: nothing,
            expected: "crate `common` is not an app: it has no Dockerfile in crates/common",
        },
        Case {
            args: args(&["release", "worker", "--repository", "127.0.0.1:1/acme/prod", "--platform", "linux/amd64"]),
            setup: nothing,
            expected: "cannot reach registry 127.0.0.1:1",
        },
        Case {
            args: args(&["release", "worker", "--repository", &protected, "--platform", "linux/amd64"]),
            setup: nothing,
            expected: &format!(
                "registry {} requires authentication for acme/prod and no credentials for it were found: run `docker login",
                registry.host
            ),
        },
        Case {
            args: args(&["release", "worker", "--repository", &protected, "--platform", "linux/amd64"]),
            setup: &|scratch| scratch.login(&protected[..protected.find('/').unwrap()], "ci", "wrong-password"),
            expected: "rejected the credentials for acme/prod (401 Unauthorized)",
        },
        Case {
            args: args(&["release", "--all", "--dry-run"]),
            setup: &|scratch| std::fs::remove_dir_all(scratch.path().join(".git")).unwrap(),
            expected: "is not a git repository",
        },
        Case {
            args: args(&["release", "--all"]),
            setup: &|scratch| scratch.write("crates/worker/src/extra.rs", "// uncommitted\n"),
            expected: "the work tree has uncommitted changes",
        },
        Case {
            args: args(&["release", "--all"]),
            setup: &|scratch| scratch.edit("Cargo.lock", |lock| lock.replacen("# This file", "# This rewritten file", 1)),
            expected: "uncommitted changes (Cargo.lock), so an image",
        },
        Case {
            args: args(&["build", "worker", "--builder", "native"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", "FROM scratch\nRUN cargo build\n");
                scratch.commit("bad dockerfile");
            },
            expected: "crates/worker/Dockerfile:2: RUN is not assembled by the native builder",
        },
        Case {
            args: args(&["build", "worker", "--builder", "engine", "--engine-builder", "ci"]),
            setup: nothing,
            expected: "--engine-builder ci names a buildx builder, and this Docker has no buildx plugin: install it",
        },
        Case {
            args: args(&["build", "worker", "--builder", "native", "--platform", "linux/amd64"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", STAGE_READS_CONTEXT);
                scratch.write(".dockerignore", "target/\n");
                scratch.commit("a runtime stage that reads the context, target/ ignored");
            },
            expected: "crates/worker/Dockerfile: its stages read the build context, whose .dockerignore leaves out target/stage/, where the xtask stages the binaries, so only an engine can read them (from a named build context): add `!target/stage` to the .dockerignore to assemble it natively, or build with --builder auto",
        },
        Case {
            // The machine's engine is Docker 20.10's legacy builder, which has no named contexts.
            args: args(&["build", "worker", "--platform", "linux/amd64"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", STAGE_READS_CONTEXT);
                scratch.write(".dockerignore", "target/\n");
                scratch.commit("a runtime stage that reads the context, target/ ignored");
            },
            expected: "crates/worker/Dockerfile reads the staged binaries from the named build context xtask-stage (its .dockerignore leaves out target/stage/), which the legacy builder cannot give: install the buildx plugin, or add `!target/stage` to the .dockerignore",
        },
        Case {
            args: args(&["build", "worker", "--platform", "linux/x86_64"]),
            setup: nothing,
            expected: "unknown platform `linux/x86_64`",
        },
        Case { args: args(&["release", "--all", "--repository", "acme/prod"]), setup: nothing, expected: "names no registry host" },
        Case {
            args: args(&["push", "target/nowhere", "127.0.0.1:1/acme/prod:x"]),
            setup: nothing,
            expected: "target/nowhere is not an OCI image layout",
        },
        Case { args: args(&["changed", "--base", "no-such-ref"]), setup: nothing, expected: "unknown git revision `no-such-ref`" },
        // git reads revisions a line each: one with a newline would read as two.
        Case {
            args: args(&["changed", "--base", "main\nHEAD"]),
            setup: nothing,
            expected: "`main\\nHEAD` is not a git revision: a revision is one line",
        },
        Case {
            args: args(&["adopt", "no-such-workspace"]),
            setup: nothing,
            expected: "no-such-workspace does not exist: give the root of the Cargo workspace to adopt the xtask",
        },
        Case { args: args(&["adopt", "."]), setup: nothing, expected: "is the xtask's own repository: give the root of another Cargo workspace" },
        Case {
            args: args(&["changed", "--all"]),
            setup: &|scratch| {
                scratch.edit("Cargo.toml", |text| format!("{text}\n[[workspace.metadata.xtask.images]]\nname = \"x\"\ndockerfile = \"docker/nope.Dockerfile\"\n"));
                scratch.commit("a declared image without its Dockerfile");
            },
            expected: "the image `x` of [[workspace.metadata.xtask.images]]: its dockerfile docker/nope.Dockerfile cannot be read",
        },
        Case {
            args: args(&["changed", "--all"]),
            setup: &|scratch| {
                scratch.edit("Cargo.toml", |text| format!("{text}\n[[workspace.metadata.xtask.images]]\nname = \"x\"\ndockerfile = \"docker/base/Dockerfile\"\ntarget = \"release\"\n"));
                scratch.commit("a declared image naming no stage");
            },
            expected: "docker/base/Dockerfile has no stage named `release`",
        },
        Case {
            args: args(&["release", "worker", "--tag-extra", "bad/suffix", "--dry-run"]),
            setup: nothing,
            expected: "`worker-bad/suffix` is not a valid tag",
        },
        Case {
            args: args(&["release", "worker", "--tag-extra", &"x".repeat(130), "--dry-run"]),
            setup: nothing,
            expected: "is not a valid tag: a tag is 1 to 128 letters",
        },
        Case {
            args: args(&["changed", "--fallback", "some"]),
            setup: nothing,
            expected: "invalid value 'some' for '--fallback <FALLBACK>'",
        },
        Case {
            args: args(&["push", "x", "127.0.0.1:1/a:b", "--jobs", "0"]),
            setup: nothing,
            expected: "invalid value '0' for '--jobs <JOBS>'",
        },
        Case {
            args: args(&["push", "x", "127.0.0.1:1/a:b", "--chunk-size", "1"]),
            setup: nothing,
            expected: "invalid value '1' for '--chunk-size <MIB>'",
        },
        Case {
            args: args(&["release", "--all", "--dry-run"]),
            setup: &|scratch| {
                scratch.edit("Cargo.toml", |manifest| manifest.replace("repository = \"\"", "repository = 5"));
                scratch.commit("broken settings");
            },
            expected: "invalid [workspace.metadata.xtask] in the root Cargo.toml",
        },
        Case {
            args: args(&["changed"]),
            setup: &|scratch| {
                scratch.edit("Cargo.toml", |manifest| {
                    format!("{manifest}\n[[workspace.metadata.xtask.rules]]\npaths = \"proto/**\"\napps = [\"nope\"]\n")
                });
                scratch.commit("rule for an unknown app");
            },
            expected: "in the rule for `proto/**` of [[workspace.metadata.xtask.rules]]: unknown app `nope`",
        },
        Case {
            args: args(&["release", "--all"]),
            setup: &|scratch: &Scratch| scratch.edit("Cargo.toml", |manifest| format!("{manifest}\n[workspace.metadata.xtask\n")),
            expected: "cannot read the Cargo workspace in",
        },
        Case {
            args: args(&["ecr", "setup", "--repository", "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/prod"]),
            setup: &|scratch: &Scratch| {
                scratch.edit("Cargo.toml", |manifest| format!("{manifest}\n[workspace.metadata.xtask.ecr]\ntag-mutability = \"FROZEN\"\n"))
            },
            expected: "tag-mutability = \"FROZEN\" in [workspace.metadata.xtask.ecr] is not one of MUTABLE, IMMUTABLE",
        },
        Case {
            args: args(&["ecr", "setup", "--repository", "ghcr.io/acme/prod"]),
            setup: nothing,
            expected: "ghcr.io is not an ECR registry",
        },
        Case {
            args: args(&["rollback", "worker", "--to", "not-a-commit"]),
            setup: nothing,
            expected: "--to not-a-commit is not a commit of this clone: pass the full 40-character sha",
        },
        Case {
            args: args(&["promote", "worker", "--from", "qa", "--to", "prod"]),
            setup: nothing,
            expected: "unknown environment `qa`: name one of [workspace.metadata.xtask.environments] (none configured)",
        },
        Case { args: args(&["changed", "--explain", "common"]), setup: nothing, expected: "crate `common` is not an app" },
        Case {
            args: args(&["release", "--all", "--exclude", "nope", "--dry-run"]),
            setup: nothing,
            expected: "in --exclude: unknown app `nope`",
        },
        Case {
            args: args(&["push", "target/nowhere", "127.0.0.1:1/acme/prod:x", "--ca-file", "/nonexistent/ca.pem"]),
            setup: nothing,
            expected: "cannot read the CA file /nonexistent/ca.pem",
        },
        Case {
            args: args(&["push", "target/nowhere", "127.0.0.1:1/acme/prod:x", "--mount-from", "Bad Repo"]),
            setup: nothing,
            expected: "--mount-from `Bad Repo` is not a repository path",
        },
        Case {
            args: args(&["push", "target/nowhere", "127.0.0.1:1/acme/prod"]),
            setup: nothing,
            expected: "has no tag: write REPOSITORY:TAG",
        },
        Case {
            args: args(&["assemble", "docker/base", "--build-arg", "VERSION", "--output", "target/assembled"]),
            setup: nothing,
            expected: "--build-arg VERSION has no value: write --build-arg NAME=VALUE",
        },
        Case {
            args: args(&["assemble", ".", "--file", "crates/worker/Dockerfile", "--output", "target/assembled"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", "FROM scratch\nENV A=\"open\n");
                scratch.commit("an unterminated quote");
            },
            expected: "crates/worker/Dockerfile:2: failed to process \"\\\"open\": unexpected end of statement while looking for matching double-quote; docker build refuses this Dockerfile too: fix that line",
        },
        Case {
            args: args(&["assemble", ".", "--file", "crates/worker/Dockerfile", "--platform", "linux/amd64", "--output", "target/assembled"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", "FROM scratch\nUSER app\nWORKDIR /srv\n");
                scratch.commit("a directory for a user named by name");
            },
            expected: "crates/worker/Dockerfile:3: WORKDIR after USER app (BuildKit makes the directory that user's, whom only the image's /etc/passwd names) is not assembled by the native builder",
        },
        Case {
            args: args(&["build", "worker"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", "FROM scratch\nCOPY ../outside /x\n");
                scratch.commit("copy from outside the context");
            },
            expected: "crates/worker/Dockerfile:2: COPY source `../outside` is not in the build context",
        },
        Case {
            args: args(&["build", "worker", "--platform", "linux/amd64"]),
            setup: &|scratch| {
                scratch.write("crates/worker/Dockerfile", "FROM scratch\nCOPY crates/worker/missing.txt /x\n");
                scratch.commit("copy a missing file");
            },
            expected: "crates/worker/Dockerfile:2: COPY source `crates/worker/missing.txt` is not in the build context",
        },
        Case {
            args: args(&["delete", "worker", "--tag", "worker-nope"]),
            setup: nothing,
            expected: "worker has no image tagged `worker-nope`: `cargo xtask images worker` lists its images and tags",
        },
        Case {
            args: args(&["delete", "worker", "--tag", "hello-api-latest", "--dry-run"]),
            setup: nothing,
            expected: "`hello-api-latest` is not a tag of worker's images, which start with `worker-`",
        },
        Case {
            args: args(&["push", "notes.tar", "oci:out:t"]),
            setup: &|scratch| scratch.write("notes.tar", "not an archive\n"),
            expected: "notes.tar is a file, so push reads it as a `docker save` archive of one image, and it is not one: pass an OCI image layout directory, or an archive that `docker save --output FILE IMAGE` wrote",
        },
        Case {
            args: args(&["hook", "uninstall"]),
            setup: nothing,
            expected: "so there is nothing to remove (`cargo xtask hook install` writes one)",
        },
        Case {
            args: args(&["build", "worker", "--platform", "linux/arm64"]),
            setup: &|scratch| {
                let config = std::fs::read_to_string(scratch.path().join(".cargo/config.toml")).unwrap();
                let aarch64 = "[target.aarch64-unknown-linux-musl]\nlinker = ";
                let config = config.replace(&format!("{aarch64}\"rust-lld\""), &format!("{aarch64}\"riscv64-linux-gnu-gcc\""));
                scratch.write(".cargo/config.toml", &config);
                scratch.commit("a cross linker that is not installed");
            },
            expected: "the linker `riscv64-linux-gnu-gcc` that .cargo/config.toml:13 sets for aarch64-unknown-linux-musl is not installed: install it with `apt-get install gcc-riscv64-linux-gnu` (Debian and Ubuntu), or set another linker there",
        },
    ];
    for case in cases {
        let scratch = Scratch::new();
        (case.setup)(&scratch);
        check(&scratch, &case.args, case.expected);
    }
}

/// A registry that answers with malformed JSON, or with a manifest that does not match the
/// digest asked for, is named, and nothing is built from what it said.
#[test]
fn malformed_and_corrupt_registry_answers_are_errors() {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let valid_index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
    let cases: [(Vec<Fault>, &str); 2] = [
        (vec![Fault::Body("{not json")], "has an invalid index"),
        (vec![Fault::Body(valid_index), Fault::Body("{}")], "served a corrupt manifest"),
    ];
    for (schedule, expected) in cases {
        let proxy = FaultProxy::start(&registry.host, schedule);
        let base = format!("{}/acme/base:1", proxy.host);
        scratch.edit("crates/worker/Dockerfile", |dockerfile| {
            let from = dockerfile.lines().find(|line| line.starts_with("FROM ")).unwrap().to_string();
            dockerfile.replace(&from, &format!("FROM {base}"))
        });
        check(&scratch, &args(&["build", "worker", "--platform", "linux/amd64"]), expected);
    }
}

/// A registry with immutable tags, as ECR's IMMUTABLE mode behaves: writing a tag that exists
/// is refused with TAG_INVALID (the proxy consults the registry's storage before each PUT).
#[test]
fn immutable_tags_are_skipped_when_unchanged_and_a_moved_tag_stops_with_the_fix() {
    let registry = Registry::start();
    let storage = registry.storage();
    let immutable: crate::support::proxy::Rule = std::sync::Arc::new(move |_, request: &str| {
        let tag = request.strip_prefix("PUT /v2/acme/prod/manifests/").and_then(|rest| rest.split(' ').next()).unwrap_or_default();
        match !tag.starts_with("sha256:") && storage.tags("acme/prod").iter().any(|(existing, _)| existing == tag) {
            true => Fault::Refuse(
                400,
                r#"{"errors":[{"code":"TAG_INVALID","message":"The image tag already exists in the 'acme/prod' repository and cannot be overwritten because the repository is immutable."}]}"#,
            ),
            false => Fault::Pass,
        }
    });
    let proxy = FaultProxy::start_with_rule(&registry.host, immutable, std::sync::Arc::new(Vec::new));
    let scratch = Scratch::new();
    let repository = format!("{}/acme/prod", proxy.host);
    let release = ["release", "worker", "--repository", &repository, "--platform", "linux/amd64"];
    scratch.xtask_ok(&release);
    // Nothing changed: both tags already name the image, so neither is written again.
    scratch.xtask_ok(&release);
    let refused = proxy.log.lock().unwrap().iter().filter(|(_, fault)| *fault != Fault::Pass).count();
    assert_eq!(refused, 0, "a re-release writes no existing tag");

    scratch.write("crates/worker/src/extra.rs", "// changed\n");
    let head = scratch.commit("worker change");
    let output = scratch.xtask(&release);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("refused to write manifest worker-latest in acme/prod"), "{message}");
    assert!(
        message.contains("TAG_INVALID") && message.contains("has immutable tags: exclude the tag from immutability or release a new tag"),
        "{message}"
    );
    assert!(
        registry.storage().tags("acme/prod").iter().any(|(tag, _)| *tag == format!("worker-{head}")),
        "the new sha tag is written first"
    );
}

#[test]
fn a_read_timeout_that_is_no_number_of_seconds_is_refused() {
    let scratch = Scratch::new();
    let output = scratch.xtask_with_env(&["images", "worker", "--repository", "127.0.0.1:1/acme/prod"], &[("XTASK_READ_TIMEOUT", "soon")]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("XTASK_READ_TIMEOUT=`soon` is not a number of seconds above 0"), "{message}");
}
