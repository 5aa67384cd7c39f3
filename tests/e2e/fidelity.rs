//! BuildKit is the oracle: every case of the corpus in `tests/e2e/fidelity/` is built by the
//! native builder (`cargo xtask assemble`) and by Docker 26's BuildKit, for linux/amd64 and
//! linux/arm64, and the two images must have the same configuration (all of it but the layer
//! digests, whose tars carry other modification times) and the same layer entries: path, type,
//! mode with special bits, owner, size, content and link target. A case marked `declined` must
//! be refused by `--builder native` (its Dockerfile needs an engine), one marked `error` by
//! both. The corpus format is described in the first lines of each corpus file's reader below.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::support::docker::Engine;
use crate::support::harness::{run, stderr, Registry, Scratch};

/// The `SOURCE_DATE_EPOCH` both builders get: image and history times come from it.
const EPOCH: &str = "1700000000";
const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

#[derive(Debug, Default)]
struct Case {
    name: String,
    /// `error`, `declined`, or empty for a case the native builder must make identically.
    expect: String,
    /// Whether the Dockerfile starts `FROM $BASE`, the base image `push_base` makes.
    on_base: bool,
    build_args: Vec<String>,
    /// `(path, contents)` of the context, the Dockerfile included.
    files: Vec<(String, String)>,
    setup: Option<String>,
}

impl Case {
    /// How many layers of its images are the base image's.
    fn base_layers(&self) -> usize {
        if self.on_base {
            BASE_LAYERS
        } else {
            0
        }
    }
}

/// Reads a corpus file: `=== name [error|declined] [base] [arg:NAME=VALUE ...]` starts a case, and
/// `-- path --` a file of its context (`Dockerfile` is the Dockerfile, `setup` a shell script run
/// in the context after the files are written).
fn read_corpus(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut section: Option<(String, String)> = None;
    let flush = |cases: &mut Vec<Case>, section: &mut Option<(String, String)>| {
        if let (Some(case), Some((name, contents))) = (cases.last_mut(), section.take()) {
            if name == "setup" {
                case.setup = Some(contents);
            } else {
                case.files.push((name, contents));
            }
        }
    };
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(header) = bare.strip_prefix("=== ") {
            flush(&mut cases, &mut section);
            let mut words = header.split_whitespace();
            let mut case = Case { name: words.next().expect("a case has a name").to_string(), ..Case::default() };
            for word in words {
                match word.strip_prefix("arg:") {
                    Some(arg) => case.build_args.push(arg.to_string()),
                    None if word == "base" => case.on_base = true,
                    // A case BuildKit refuses is one the native builder must refuse, declined or not.
                    None if case.expect != "error" => case.expect = word.to_string(),
                    None => {}
                }
            }
            cases.push(case);
        } else if let Some(name) = bare.strip_prefix("-- ").and_then(|rest| rest.strip_suffix(" --")) {
            flush(&mut cases, &mut section);
            section = Some((name.to_string(), String::new()));
        } else if let Some((_, contents)) = &mut section {
            contents.push_str(line);
        }
    }
    flush(&mut cases, &mut section);
    cases
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fidelity");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let cases: Vec<Case> = files.iter().flat_map(|file| read_corpus(&fs::read_to_string(file).unwrap())).collect();
    let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    cases
}

/// Writes a case's context into `dir` and runs its setup script there.
fn materialise(case: &Case, dir: &Path) {
    for (path, contents) in &case.files {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, contents).unwrap();
    }
    if let Some(setup) = &case.setup {
        let output = run(Command::new("sh").arg("-ec").arg(setup).current_dir(dir));
        assert!(output.status.success(), "{}: setup failed: {}", case.name, stderr(&output));
    }
}

/// An image as the comparison sees it: its configuration, the layer digests left out, and each
/// layer's entries.
#[derive(Debug, PartialEq)]
struct Image {
    config: serde_json::Value,
    layers: Vec<Vec<String>>,
}

/// One line per tar entry: path, type, mode, owner, size, content digest or link target.
fn entries(tar_bytes: impl Read) -> Vec<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut lines = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry.path().unwrap().display().to_string();
        let link = entry.link_name().unwrap().map(|link| link.display().to_string()).unwrap_or_default();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        let digest = if contents.is_empty() { String::new() } else { format!("{:x}", Sha256::digest(&contents))[..12].to_string() };
        lines.push(format!(
            "{path} {:?} {:o} {}:{} {} {digest}{}",
            header.entry_type(),
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.size().unwrap(),
            if link.is_empty() { String::new() } else { format!("-> {link}") }
        ));
    }
    lines
}

/// Reads the image a manifest names from an OCI layout (`blobs/sha256/` under `dir`), its first
/// `skip` layers (a base image's, which the native layout only references) left out.
fn read_image(dir: &Path, manifest_digest: &str, skip: usize) -> Image {
    let blob = |digest: &str| fs::read(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(manifest_digest)).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
    config["rootfs"]["diff_ids"] = serde_json::json!(diff_ids);
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .skip(skip)
        .map(|layer| {
            let bytes = blob(layer["digest"].as_str().unwrap());
            if layer["mediaType"].as_str().unwrap().ends_with("gzip") {
                entries(flate2::read::GzDecoder::new(&bytes[..]))
            } else {
                entries(&bytes[..])
            }
        })
        .collect();
    Image { config, layers }
}

/// How many layers the base image has.
const BASE_LAYERS: usize = 2;

/// One entry of a base image's layer: path, type, mode, owner, and contents or link target.
type BaseEntry = (&'static str, tar::EntryType, u32, u64, &'static str);

/// The base image's layers: what a COPY or WORKDIR meets in a Debian-like image. A merged `/usr`
/// (`/bin` a link to `usr/bin`), a sticky `/tmp`, directories of a user, an absolute link to a
/// directory, and a second layer that removes a file (whiteout) and empties a directory (opaque
/// whiteout). No `/etc/passwd`, so that numeric owners stay the native builder's to resolve.
fn base_layers() -> [Vec<BaseEntry>; BASE_LAYERS] {
    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
    [
        vec![
            ("bin", L, 0o777, 0, "usr/bin"),
            ("etc/", D, 0o755, 0, ""),
            ("etc/os-release", F, 0o644, 0, "ID=fidelity\n"),
            ("home/", D, 0o755, 0, ""),
            ("home/user/", D, 0o700, 1000, ""),
            ("old/", D, 0o755, 0, ""),
            ("old/gone", F, 0o644, 0, "gone\n"),
            ("old/kept", F, 0o644, 0, "kept\n"),
            ("opq/", D, 0o755, 0, ""),
            ("opq/old", F, 0o644, 0, "old\n"),
            ("opt/", D, 0o755, 0, ""),
            ("opt/current", L, 0o777, 0, "/srv"),
            ("srv/", D, 0o755, 0, ""),
            ("tmp/", D, 0o1777, 0, ""),
            ("usr/", D, 0o755, 0, ""),
            ("usr/bin/", D, 0o755, 0, ""),
            ("usr/bin/sh", F, 0o755, 0, "#!/bin/false\n"),
            ("var/", D, 0o755, 0, ""),
            ("var/lib/", D, 0o755, 0, ""),
            ("var/lib/app/", D, 0o750, 1000, ""),
        ],
        vec![
            ("old/", D, 0o755, 0, ""),
            ("old/.wh.gone", F, 0o644, 0, ""),
            ("opq/", D, 0o755, 0, ""),
            ("opq/.wh..wh..opq", F, 0o644, 0, ""),
            ("opq/new", F, 0o644, 0, "new\n"),
        ],
    ]
}

/// Pushes the base image (`base_layers`, for both platforms, with a configuration that sets
/// Env, WorkingDir, Cmd and a label) to `reference` with the xtask.
fn push_base(scratch: &Scratch, reference: &str) {
    let dir = scratch.path().join("fidelity-base");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8], media_type: &str| {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for entries in base_layers() {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, mode, owner, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(owner);
            header.set_gid(owner);
            header.set_mtime(1_600_000_000);
            if kind == tar::EntryType::Symlink {
                header.set_size(0);
                tar.append_link(&mut header, path, data).unwrap();
            } else {
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data.as_bytes()).unwrap();
            }
        }
        let tar = tar.into_inner().unwrap();
        diff_ids.push(format!("sha256:{:x}", Sha256::digest(&tar)));
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        layers.push(write_blob(&gzip.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip"));
    }
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin", "BASE=yes"], "Cmd": ["sh"], "WorkingDir": "/srv", "Labels": {"base.label": "1"}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "base files"}, {"created": "2020-09-13T12:26:40Z", "created_by": "base removals"}],
        });
        let config = write_blob(config.to_string().as_bytes(), "application/vnd.oci.image.config.v1+json");
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers,
        });
        let mut entry = write_blob(manifest.to_string().as_bytes(), "application/vnd.oci.image.manifest.v1+json");
        entry["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        entries.push(entry);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let mut root = write_blob(index.to_string().as_bytes(), "application/vnd.oci.image.index.v1+json");
    root["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "base"});
    fs::write(dir.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [root]}).to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    scratch.xtask_ok(&["push", dir.to_str().unwrap(), reference]);
}

/// What `xtask assemble` made of a case: its platform images, or its error.
fn native(scratch: &Scratch, case: &Case, context: &Path, base: Option<&String>) -> Result<BTreeMap<String, Image>, String> {
    let out = context.with_extension("native");
    let mut args = vec![
        "assemble".to_string(),
        context.display().to_string(),
        "--platform".into(),
        PLATFORMS.join(","),
        "--output".into(),
        out.display().to_string(),
    ];
    for arg in case.build_args.iter().chain(base) {
        args.extend(["--build-arg".to_string(), arg.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = scratch.xtask_with_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)]);
    if !output.status.success() {
        return Err(stderr(&output));
    }
    let index: serde_json::Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let root = index["manifests"][0]["digest"].as_str().unwrap();
    let image_index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("blobs/sha256").join(root.trim_start_matches("sha256:"))).unwrap()).unwrap();
    Ok(image_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let platform = format!("{}/{}", entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap());
            (platform, read_image(&out, entry["digest"].as_str().unwrap(), case.base_layers()))
        })
        .collect())
}

/// Builds a case with BuildKit, one platform at a time, tagged `fidelity/<case>:<arch>`.
fn buildkit(engine: &Engine, scratch: &Scratch, case: &Case, context: &Path, base: Option<&String>) -> Result<(), String> {
    for platform in PLATFORMS {
        let arch = platform.rsplit('/').next().unwrap();
        let mut command = engine.docker();
        command.env("DOCKER_CONFIG", scratch.docker_config()).args(["buildx", "build", "--quiet", "--platform", platform]);
        command.args(["--build-arg", &format!("SOURCE_DATE_EPOCH={EPOCH}")]);
        for arg in case.build_args.iter().chain(base) {
            command.args(["--build-arg", arg]);
        }
        command.args(["--tag", &format!("fidelity/{}:{arch}", case.name), "--file"]).arg(context.join("Dockerfile")).arg(context);
        let output = run(&mut command);
        if !output.status.success() {
            return Err(stderr(&output));
        }
    }
    Ok(())
}

/// Reads the images BuildKit built: each configuration as the engine stores it, and the layers
/// of those that have any from one `docker save` (which refuses an image without layers).
fn saved_images(engine: &Engine, dir: &Path, tags: &[(String, usize)]) -> BTreeMap<String, Image> {
    let skips: BTreeMap<String, usize> = tags.iter().cloned().collect();
    let mut images = BTreeMap::new();
    let mut with_layers = Vec::new();
    for (tag, _) in tags {
        let mut config: serde_json::Value = serde_json::from_slice(&engine.raw_config(tag)).unwrap();
        let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
        config["rootfs"]["diff_ids"] = serde_json::json!(diff_ids);
        if diff_ids > 0 {
            with_layers.push(tag.clone());
        }
        images.insert(tag.clone(), Image { config, layers: Vec::new() });
    }
    for chunk in with_layers.chunks(100) {
        let archive = dir.join("saved.tar");
        let output = run(engine.docker().arg("save").arg("--output").arg(&archive).args(chunk));
        assert!(output.status.success(), "docker save failed: {}", stderr(&output));
        let layout = dir.join("saved");
        let _ = fs::remove_dir_all(&layout);
        fs::create_dir_all(&layout).unwrap();
        tar::Archive::new(fs::File::open(&archive).unwrap()).unpack(&layout).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        for entry in index["manifests"].as_array().unwrap() {
            let name = entry["annotations"]["io.containerd.image.name"].as_str().unwrap();
            let tag = name.trim_start_matches("docker.io/").to_string();
            let saved = read_image(&layout, entry["digest"].as_str().unwrap(), skips[&tag]);
            images.get_mut(&tag).expect("a saved image was built").layers = saved.layers;
        }
    }
    images
}

const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The instructions and flags the corpus exercises (lines that start with one), counted, for the
/// report.
fn forms(cases: &[Case]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for case in cases {
        let Some((_, dockerfile)) = case.files.iter().find(|(path, _)| path == "Dockerfile") else { continue };
        for line in dockerfile.lines() {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            let keyword = keyword.trim_start_matches('\u{feff}').to_ascii_uppercase();
            if !INSTRUCTIONS.contains(&keyword.as_str()) {
                continue;
            }
            *counts.entry(keyword.clone()).or_default() += 1;
            for word in words.take_while(|word| word.starts_with("--")) {
                let flag = word.split('=').next().unwrap();
                *counts.entry(format!("{keyword} {flag}")).or_default() += 1;
            }
        }
    }
    counts
}

#[test]
fn native_images_are_the_images_buildkit_makes() {
    let Some(engine) = Engine::docker26() else { return };
    let cases = corpus();
    let scratch = Scratch::empty();
    // The base image lives in a registry both builders read: the engine through a forwarder.
    let registry = Registry::start();
    engine.prepare(&scratch, &registry);
    let base_reference = format!("{}/fidelity/base:1", registry.host);
    push_base(&scratch, &base_reference);
    let base_arg = format!("BASE={base_reference}");
    let base = |case: &Case| case.on_base.then_some(&base_arg);
    let work = tempfile::tempdir().unwrap();

    // BuildKit builds in a thread of its own while the native builder works through the cases.
    let contexts: Vec<PathBuf> = cases
        .iter()
        .map(|case| {
            let dir = work.path().join(&case.name);
            fs::create_dir_all(&dir).unwrap();
            materialise(case, &dir);
            dir
        })
        .collect();
    let (built, natives) = std::thread::scope(|scope| {
        let built = scope.spawn(|| {
            cases.iter().zip(&contexts).map(|(case, context)| buildkit(&engine, &scratch, case, context, base(case))).collect::<Vec<_>>()
        });
        let natives: Vec<_> = cases.iter().zip(&contexts).map(|(case, context)| native(&scratch, case, context, base(case))).collect();
        (built.join().unwrap(), natives)
    });
    let tags: Vec<(String, usize)> = cases
        .iter()
        .zip(&built)
        .filter(|(_, built)| built.is_ok())
        .flat_map(|(case, _)| {
            PLATFORMS.map(|platform| (format!("fidelity/{}:{}", case.name, platform.rsplit('/').next().unwrap()), case.base_layers()))
        })
        .collect();
    let mut saved = saved_images(&engine, work.path(), &tags);

    let mut failures = Vec::new();
    let mut identical = 0;
    for ((case, built), native) in cases.iter().zip(built).zip(natives) {
        match (case.expect.as_str(), built, native) {
            ("error", Err(_), Err(_)) => {}
            ("error", Ok(()), _) => failures.push(format!("{}: BuildKit built it, the corpus says it must fail", case.name)),
            ("error", Err(_), Ok(_)) => failures.push(format!("{}: BuildKit refused it and the native builder made an image", case.name)),
            (_, Err(err), _) => failures.push(format!("{}: BuildKit failed: {err}", case.name)),
            ("declined", Ok(()), Err(err)) if err.contains("native builder") => {}
            ("declined", Ok(()), outcome) => {
                failures.push(format!("{}: the native builder was to decline it, and answered {outcome:?}", case.name))
            }
            (_, Ok(()), Err(err)) => failures.push(format!("{}: the native builder failed: {err}", case.name)),
            (_, Ok(()), Ok(images)) => {
                for platform in PLATFORMS {
                    let tag = format!("fidelity/{}:{}", case.name, platform.rsplit('/').next().unwrap());
                    let oracle = saved.remove(&tag).expect("saved");
                    let ours = &images[platform];
                    if *ours == oracle {
                        identical += 1;
                    } else {
                        failures.push(format!(
                            "{} ({platform}) differs:\n  BuildKit config: {}\n  native config:   {}\n  BuildKit layers: {:#?}\n  native layers:   {:#?}",
                            case.name, oracle.config, ours.config, oracle.layers, ours.layers
                        ));
                    }
                }
            }
        }
    }
    let count = |expect: &str| cases.iter().filter(|case| case.expect == expect).count();
    eprintln!(
        "fidelity corpus: {} cases ({} native, {} declined, {} errors); {identical} platform images identical to BuildKit's",
        cases.len(),
        count(""),
        count("declined"),
        count("error")
    );
    for (form, count) in forms(&cases) {
        eprintln!("  {form}: {count}");
    }
    assert!(failures.is_empty(), "{} of {} cases differ from BuildKit:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `docker buildx build` of `dockerfile` in `scratch` for `platform`, tagged `tag`, its times
/// from the commit's `epoch` as the xtask's are.
fn buildx_build(engine: &Engine, scratch: &Scratch, platform: &str, epoch: &str, tag: &str, dockerfile: &str) -> std::process::Output {
    let mut command = engine.docker();
    command.env("DOCKER_CONFIG", scratch.docker_config()).args(["buildx", "build", "--quiet", "--platform", platform]);
    command.args(["--build-arg", &format!("SOURCE_DATE_EPOCH={}", epoch.trim()), "--tag", tag, "--file", dockerfile, "."]);
    run(command.current_dir(scratch.path()))
}

/// The shape most app images have (a working directory, the binary copied to `.`, a 600
/// configuration file, a setuid helper, `ENTRYPOINT ["./app"]`), built by the real pipeline:
/// it runs, and it is the image BuildKit makes of the same Dockerfile and context but for the
/// `org.opencontainers.image.*` labels the xtask adds.
#[test]
fn the_common_app_shape_runs_and_is_the_image_buildkit_makes() {
    let Some(engine) = Engine::docker26() else { return };
    let scratch = Scratch::new();
    scratch.write(
        "crates/worker/Dockerfile",
        "FROM scratch\nARG TARGETPLATFORM\nWORKDIR /app\nCOPY target/stage/${TARGETPLATFORM}/worker .\n\
         COPY crates/worker/config/app.toml ./config/\nCOPY crates/worker/helper .\nENV TOP=2\nENTRYPOINT [\"./worker\"]\n",
    );
    scratch.write("crates/worker/config/app.toml", "level = \"info\"\n");
    scratch.write("crates/worker/helper", "#!/bin/false\n");
    scratch.commit("the common app shape");
    // Modes git does not keep, set in the work tree as a checkout step would.
    for (path, mode) in [("crates/worker/config/app.toml", "600"), ("crates/worker/helper", "4755")] {
        assert!(run(Command::new("chmod").arg(mode).arg(scratch.path().join(path))).status.success());
    }
    engine.install_buildx(&scratch);
    let built = scratch.xtask_with_env(&["build", "worker", "--load"], &engine.env());
    assert!(built.status.success(), "{}", stderr(&built));
    assert_eq!(
        crate::laptop::run_worker(engine.docker(), "worker:latest"),
        format!("2 be\n2 to\napp=worker event=done words=2 platform={}\n", crate::laptop::host_platform())
    );
    let built = scratch.xtask(&["build", "worker"]);
    assert!(built.status.success(), "{}", stderr(&built));

    let epoch = scratch.git(&["log", "-1", "--format=%ct"]);
    let mut tags = Vec::new();
    for platform in PLATFORMS {
        let tag = format!("fidelity/app-shape:{}", platform.rsplit('/').next().unwrap());
        let output = buildx_build(&engine, &scratch, platform, &epoch, &tag, "crates/worker/Dockerfile");
        assert!(output.status.success(), "{}", stderr(&output));
        tags.push((tag, 0));
    }
    let work = tempfile::tempdir().unwrap();
    let mut oracle = saved_images(&engine, work.path(), &tags);

    let layout = scratch.path().join("target/xtask/oci/worker");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let root = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let image_index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(root)).unwrap()).unwrap();
    for (entry, platform) in image_index["manifests"].as_array().unwrap().iter().zip(PLATFORMS) {
        let mut ours = read_image(&layout, entry["digest"].as_str().unwrap(), 0);
        let labels = ours.config["config"]["Labels"].as_object_mut().unwrap();
        labels.retain(|key, _| !key.starts_with("org.opencontainers.image."));
        if labels.is_empty() {
            ours.config["config"].as_object_mut().unwrap().remove("Labels");
        }
        let theirs = oracle.remove(&format!("fidelity/app-shape:{}", platform.rsplit('/').next().unwrap())).unwrap();
        assert_eq!(ours, theirs, "{platform}: the xtask's image differs from BuildKit's");
        let modes: Vec<&String> =
            ours.layers.iter().flatten().filter(|entry| entry.contains("config/app.toml") || entry.contains("app/helper")).collect();
        assert_eq!(modes.len(), 2, "{modes:?}");
        assert!(modes[0].contains(" 600 ") && modes[1].contains(" 4755 "), "modes kept: {modes:?}");
    }
}

/// A Rust image of this machine's toolchain (`rustc`, `cargo`, the host's and the amd64 musl
/// target's libraries, rust-lld as the musl linker) on the real Debian root file system tests/ci.sh
/// makes (`XTASK_TEST_ROOTFS`), imported into `engine` once: the stand-in for Docker Hub's
/// `rust`, which is not reachable here. `None` without the root file system.
fn rust_image(engine: &Engine) -> Option<String> {
    let Some(rootfs) = std::env::var_os("XTASK_TEST_ROOTFS") else {
        eprintln!("XTASK_TEST_ROOTFS is not set (tests/ci.sh sets it): skipping the builder stage's comparison with BuildKit");
        return None;
    };
    let version = run(Command::new("rustc").arg("--version"));
    let version = crate::support::harness::stdout(&version).split_whitespace().nth(1).unwrap().to_string();
    // Both musl targets' standard libraries, as `rustup target add` gives the official image.
    let tag = format!("xtask-test/rust:{version}-musl-amd64-arm64");
    if run(engine.docker().args(["image", "inspect", &tag])).status.success() {
        return Some(tag);
    }
    let sysroot = PathBuf::from(crate::support::harness::stdout(&run(Command::new("rustc").args(["--print", "sysroot"]))).trim());
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("rust.tar");
    let mut out = tar::Builder::new(fs::File::create(&archive).unwrap());
    out.follow_symlinks(false);
    let mut debian = tar::Archive::new(fs::File::open(&rootfs).unwrap());
    for entry in debian.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        out.append_data(&mut header, path, &mut entry).unwrap();
    }
    let host = "lib/rustlib/x86_64-unknown-linux-gnu";
    for part in ["bin/rustc", "bin/cargo", "lib", "lib/rustlib/x86_64-unknown-linux-musl", "lib/rustlib/aarch64-unknown-linux-musl", host] {
        let source = sysroot.join(part);
        let dest = Path::new("usr/local/rust").join(part);
        if source.is_dir() && part == "lib" {
            // The toolchain's shared libraries; the targets' directories come one by one.
            for library in fs::read_dir(&source).unwrap().flatten().filter(|entry| entry.path().is_file()) {
                out.append_path_with_name(library.path(), dest.join(library.file_name())).unwrap();
            }
        } else if source.is_dir() {
            out.append_dir_all(&dest, &source).unwrap();
        } else {
            out.append_path_with_name(&source, &dest).unwrap();
        }
    }
    out.into_inner().unwrap();
    let changes = [
        format!("ENV PATH=/usr/local/rust/bin:/usr/local/rust/{host}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "ENV CARGO_HOME=/usr/local/cargo".to_string(),
        "ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld".to_string(),
    ];
    let mut command = engine.docker();
    command.args(["import", "--platform", "linux/amd64"]);
    for change in &changes {
        command.args(["--change", change]);
    }
    let output = run(command.arg(&archive).arg(&tag));
    assert!(output.status.success(), "docker import of the Rust image: {}", stderr(&output));
    Some(tag)
}

/// The Debian root file system tests/ci.sh makes, imported into `engine` once as a runtime base
/// (`debian:bookworm` of a real repository's Dockerfile).
fn debian_image(engine: &Engine) -> Option<String> {
    let rootfs = std::env::var_os("XTASK_TEST_ROOTFS")?;
    let tag = "xtask-test/bookworm:12".to_string();
    if !run(engine.docker().args(["image", "inspect", &tag])).status.success() {
        let output = run(engine.docker().args(["import", "--platform", "linux/amd64"]).arg(&rootfs).arg(&tag));
        assert!(output.status.success(), "docker import of the Debian root file system: {}", stderr(&output));
    }
    Some(tag)
}

/// BuildKit is the oracle for builder stages too: the Dockerfile as a Rust repository writes it
/// (`FROM rust AS builder`, `RUN cargo build`, a runtime stage that copies the binary and runs a
/// step) is built by BuildKit as written, cargo running in the builder stage, and by the xtask,
/// which replaces the builder stage with its cross-compiled binary. The two images have the same
/// configuration, history included, and the same layer entries but the binary's bytes, and both
/// run: on `scratch`, and on Debian with a user the runtime stage adds; built by `cargo install`,
/// chosen by a shell `if` on a build argument, and for linux/arm64 cross-compiled in a builder
/// stage `FROM --platform=$BUILDPLATFORM`, its target chosen by a `case` on TARGETARCH (the
/// workspace configures no linker: the xtask's build takes rust-lld), whose runtime step BuildKit
/// runs under qemu. (Elsewhere linux/amd64: an arm64 `cargo build` under qemu takes minutes;
/// tests/bench/stages.py builds it.)
#[test]
fn a_replaced_builder_stage_gives_the_image_buildkit_makes_of_the_dockerfile_as_written() {
    let Some(engine) = Engine::docker26() else { return };
    let Some(rust) = rust_image(&engine) else { return };
    let debian = debian_image(&engine).expect("XTASK_TEST_ROOTFS is set with the Rust image's");
    let builder = format!(
        "FROM {rust} AS builder\nWORKDIR /src\nCOPY . .\nRUN cargo build --release --locked --offline -p stamp --target x86_64-unknown-linux-musl\n\n"
    );
    let copy = "COPY --from=builder --chmod=755 /src/target/x86_64-unknown-linux-musl/release/stamp /usr/local/bin/stamp\n";
    // The same build as `cargo install` writes it, into the root the later stage copies from.
    let installer = format!(
        "FROM {rust} AS builder\nWORKDIR /src\nCOPY . .\nRUN cargo install --path crates/stamp --locked --offline --root /opt/stamp --target x86_64-unknown-linux-musl\n\n"
    );
    let installed = "COPY --from=builder /opt/stamp/bin/stamp /usr/local/bin/stamp\n";
    // The build chosen by a shell `if` on a build argument, as AppFlowy's and Lemmy's are; its
    // features an empty build argument, quoted, as reth's are (sh passes an empty list).
    let switched = format!(
        "FROM {rust} AS builder\nARG PROFILE=release\nARG FEATURES=\"\"\nWORKDIR /src\nCOPY . .\nRUN if [ \"$PROFILE\" = \"release\" ]; then \\\n      cargo build --release --features \"$FEATURES\" --locked --offline -p stamp --target x86_64-unknown-linux-musl; \\\n    else \\\n      cargo build --locked --offline -p stamp --target x86_64-unknown-linux-musl; \\\n    fi\n\n"
    );
    let runtimes = [
        (
            "scratch",
            format!("{builder}FROM scratch\n{copy}RUN [\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"]\nENV STAMP_MODE=oracle\nWORKDIR /data\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"),
            0,
        ),
        (
            "debian",
            format!("{builder}FROM {debian}\nRUN useradd --system --no-create-home stamp\n{copy}USER stamp\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"),
            1,
        ),
        (
            "install",
            format!("{installer}FROM scratch\n{installed}RUN [\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"]\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"),
            0,
        ),
        ("if", format!("{switched}FROM scratch\n{copy}ENTRYPOINT [\"/usr/local/bin/stamp\"]\n"), 0),
        // A file of the context out of the builder stage, as pgcat's configuration: read from the
        // context, the builder stage still replaced.
        (
            "context-file",
            format!("{builder}FROM scratch\n{copy}COPY --from=builder /src/crates/stamp/stamp.toml /etc/stamp/\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"),
            0,
        ),
        // arm64, as Rust repositories cross-compile in the Dockerfile: the builder stage runs on
        // the build platform, a `case` on TARGETARCH chooses the Rust target (shadowsocks'
        // shape), and BuildKit runs the runtime stage's step under qemu.
        ("arm64", format!("FROM --platform=$BUILDPLATFORM {rust} AS builder\nARG TARGETARCH\nWORKDIR /src\nCOPY . .\nRUN case \"$TARGETARCH\" in \\\n      amd64) RUST_TARGET=x86_64-unknown-linux-musl ;; \\\n      arm64) RUST_TARGET=aarch64-unknown-linux-musl ;; \\\n    esac && \\\n    RUSTFLAGS=-Clinker=rust-lld cargo build --release --locked --offline -p stamp --target \"$RUST_TARGET\" && \\\n    cp target/$RUST_TARGET/release/stamp /stamp\n\nFROM scratch\nCOPY --from=builder --chmod=755 /stamp /usr/local/bin/stamp\nRUN [\"/usr/local/bin/stamp\", \"/etc/stamp-arch\"]\nENTRYPOINT [\"/usr/local/bin/stamp\"]\n"), 0),
    ];
    for (runtime, dockerfile, base_layers) in runtimes {
        let (platform, arch) = if runtime == "arm64" { ("linux/arm64", "aarch64") } else { ("linux/amd64", "x86_64") };
        let scratch = Scratch::empty();
        scratch.write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"2\"\n");
        scratch.write("crates/stamp/Cargo.toml", "[package]\nname = \"stamp\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
        scratch.write(
            "crates/stamp/src/main.rs",
            "fn main() {\n    let path = std::env::args().nth(1).expect(\"stamp needs a file to write\");\n    std::fs::write(path, std::env::consts::ARCH).unwrap();\n}\n",
        );
        scratch.write("crates/stamp/stamp.toml", "mode = \"oracle\"\n");
        scratch.write("crates/stamp/Dockerfile", &dockerfile);
        scratch.write(".dockerignore", "target\n.git\n");
        let lockfile = run(Command::new(env!("CARGO")).args(["generate-lockfile", "--offline"]).current_dir(scratch.path()));
        assert!(lockfile.status.success(), "{}", stderr(&lockfile));
        scratch.git(&["init", "-q", "-b", "main"]);
        scratch.commit("a Rust repository's Dockerfile");
        engine.install_buildx(&scratch);

        let built = scratch.xtask_with_env(&["build", "stamp", "--platform", platform], &engine.env());
        let log = stderr(&built);
        assert!(built.status.success(), "{runtime}: {log}");
        assert!(log.contains("stamp: the builder stage `builder` (crates/stamp/Dockerfile:1) runs cargo build"), "{runtime}: {log}");
        let epoch = scratch.git(&["log", "-1", "--format=%ct"]);
        let tag = format!("fidelity/builder-stage-{runtime}:{arch}");
        let output = buildx_build(&engine, &scratch, platform, &epoch, &tag, "crates/stamp/Dockerfile");
        assert!(output.status.success(), "{runtime}: BuildKit could not build the Dockerfile as written: {}", stderr(&output));
        let work = tempfile::tempdir().unwrap();
        let mut theirs = saved_images(&engine, work.path(), &[(tag.clone(), base_layers)]).remove(&tag).unwrap();

        let layout = scratch.path().join("target/xtask/oci/stamp");
        let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let root = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let image_index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(root)).unwrap()).unwrap();
        let mut ours = read_image(&layout, image_index["manifests"][0]["digest"].as_str().unwrap(), base_layers);
        let labels = ours.config["config"]["Labels"].as_object_mut().unwrap();
        labels.retain(|key, _| !key.starts_with("org.opencontainers.image."));
        if labels.is_empty() {
            ours.config["config"].as_object_mut().unwrap().remove("Labels");
        }
        // The binaries are the two builds' own: their entries keep path, type, mode and owner.
        for image in [&mut ours, &mut theirs] {
            for entry in image.layers.iter_mut().flatten().filter(|entry| entry.starts_with("usr/local/bin/stamp ")) {
                *entry = entry.split(' ').take(4).collect::<Vec<_>>().join(" ");
            }
        }
        assert_eq!(ours, theirs, "{runtime}: the xtask's image differs from the one BuildKit makes of the Dockerfile as written");
        let loaded = format!("xtask/stamp:{}", platform.replace('/', "-"));
        for image in [tag.as_str(), loaded.as_str()] {
            let output = run(engine.docker().args(["run", "--rm", "--platform", platform, image, "/dev/stdout"]));
            assert_eq!(
                (output.status.success(), crate::support::harness::stdout(&output)),
                (true, arch.to_string()),
                "{runtime}, {image}: {}",
                stderr(&output)
            );
        }
    }
}
