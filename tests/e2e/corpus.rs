//! Images written by other tools: each is pushed byte-identically, read back by skopeo, listed by
//! `images` and used as a `FROM` base. The corpus is made at test time by the tools themselves
//! (umoci, skopeo, buildah, podman, and `docker save` on Docker 20.10 and 26, whose archive
//! formats differ), so it is what those tools write today, not what we think they write.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::docker::Engine;
use crate::support::harness::{require_tool, run, skopeo, stderr, stdout, Registry, Scratch};

/// One image of the corpus: how it reaches the registry.
enum Source {
    /// An OCI image layout holding the image under the name `t`, pushed by the xtask.
    Layout(PathBuf),
    /// Already pushed by the tool itself (Docker's manifest format, which a layout cannot carry).
    Pushed,
    /// A `docker save` archive, pushed by the xtask, of the image whose ID (its configuration's
    /// digest) is the second field.
    Archive(PathBuf, String),
}

fn sh(dir: &Path, script: &str) {
    let output = run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
    assert!(output.status.success(), "{script}:\n{}{}", stdout(&output), stderr(&output));
}

/// Makes the corpus in `dir`; images the tools push go to `repository` as `worker-<name>`.
fn make_corpus(dir: &Path, repository: &str) -> Vec<(&'static str, Source)> {
    for tool in ["umoci", "skopeo", "buildah", "podman"] {
        require_tool(tool);
    }
    // umoci writes manifests without the optional mediaType.
    sh(
        dir,
        "umoci init --layout umoci && umoci new --image umoci:t && umoci unpack --image umoci:t bundle >/dev/null \
         && mkdir -p bundle/rootfs/etc && echo umoci > bundle/rootfs/etc/base-release && umoci repack --image umoci:t bundle",
    );
    sh(dir, "skopeo copy --quiet oci:umoci:t oci:skopeo:t");
    sh(dir, &format!("skopeo copy --quiet --format v2s2 --dest-tls-verify=false oci:umoci:t docker://{repository}:worker-skopeo-v2s2"));
    // buildah, in storage of its own, from scratch with one file.
    let buildah = "buildah --root $PWD/containers --runroot $PWD/run --storage-driver vfs";
    sh(
        dir,
        &format!(
            "echo buildah > release && c=$({buildah} from scratch) && {buildah} copy $c release /etc/base-release >/dev/null \
             && {buildah} config --arch amd64 --os linux --entrypoint '[\"/bin/true\"]' $c \
             && {buildah} commit --quiet --format oci $c corpus-oci >/dev/null && {buildah} push --quiet corpus-oci oci:$PWD/buildah:t \
             && {buildah} commit --quiet --format docker $c corpus-docker >/dev/null \
             && {buildah} push --quiet --tls-verify=false corpus-docker docker://{repository}:worker-buildah-docker"
        ),
    );
    // podman import, which also leaves out mediaType, written as a layout and pushed as Docker's.
    let podman = "podman --root $PWD/podman-storage --runroot $PWD/podman-run --storage-driver vfs";
    sh(
        dir,
        &format!(
            "mkdir -p rootfs/etc && echo podman > rootfs/etc/base-release && tar -C rootfs -cf rootfs.tar . \
             && {podman} import --quiet rootfs.tar localhost/corpus-podman:t >/dev/null \
             && {podman} push --quiet localhost/corpus-podman:t oci:$PWD/podman:t \
             && {podman} push --quiet --format v2s2 --tls-verify=false localhost/corpus-podman:t docker://{repository}:worker-podman-v2s2"
        ),
    );
    let mut corpus = vec![
        ("umoci", Source::Layout(dir.join("umoci"))),
        ("podman-import", Source::Layout(dir.join("podman"))),
        ("podman-v2s2", Source::Pushed),
        ("skopeo", Source::Layout(dir.join("skopeo"))),
        ("buildah-oci", Source::Layout(dir.join("buildah"))),
        ("skopeo-v2s2", Source::Pushed),
        ("buildah-docker", Source::Pushed),
    ];
    // `docker import` of the same root file system, then `docker save`: Docker 20.10 writes its
    // own archive format, Docker 26 an OCI layout.
    for (name, engine) in [("docker-save", Engine::default_engine()), ("docker26-save", Engine::docker26())] {
        let Some(engine) = engine else { continue };
        let image = format!("xtask-corpus/{name}:t");
        let imported = run(engine.docker().args(["import", "rootfs.tar", &image]).current_dir(dir));
        assert!(imported.status.success(), "{}", stderr(&imported));
        let archive = dir.join(format!("{name}.tar"));
        let saved = run(engine.docker().args(["save", "--output", archive.to_str().unwrap(), &image]));
        assert!(saved.status.success(), "{}", stderr(&saved));
        let id = run(engine.docker().args(["image", "inspect", "--format", "{{.Id}}", &image]));
        corpus.push((name, Source::Archive(archive, stdout(&id).trim().to_string())));
    }
    corpus
}

/// The manifest the layout names `t`, as its bytes.
fn layout_manifest(layout: &Path) -> Vec<u8> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry =
        index["manifests"].as_array().unwrap().iter().find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == "t");
    let digest = entry.expect("the layout names t")["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    std::fs::read(layout.join("blobs/sha256").join(digest)).unwrap()
}

/// The manifest a Docker 25+ archive (an OCI layout) holds, as its bytes; none in older archives.
fn archive_manifest(archive: &Path) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let output = run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).ok()?).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    Some(std::fs::read(dir.path().join("blobs/sha256").join(digest)).unwrap())
}

#[test]
fn images_other_tools_write_are_pushed_unchanged_listed_and_built_on() {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let repository = format!("{}/acme/corpus", registry.host);
    let corpus_dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(corpus_dir.path(), &repository);
    let dockerfile = std::fs::read_to_string(scratch.path().join("crates/worker/Dockerfile")).unwrap();
    for (name, source) in &corpus {
        let reference = format!("{repository}:worker-{name}");
        if let Source::Layout(layout) = source {
            let output = scratch.xtask(&["push", &format!("{}:t", layout.display()), &reference]);
            assert!(output.status.success(), "push of the {name} image failed:\n{}", stderr(&output));
            let pushed = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
            assert!(pushed.status.success(), "{}", stderr(&pushed));
            assert_eq!(pushed.stdout, layout_manifest(layout), "the {name} manifest is pushed byte for byte");
        }
        if let Source::Archive(archive, image_id) = source {
            let output = scratch.xtask(&["push", archive.to_str().unwrap(), &reference]);
            assert!(output.status.success(), "push of the {name} archive failed:\n{}", stderr(&output));
            let pushed = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]);
            let manifest: serde_json::Value = serde_json::from_slice(&pushed.stdout).unwrap();
            assert_eq!(&manifest["config"]["digest"], image_id, "the {name} configuration is pushed byte for byte");
            if let Some(layout_manifest) = archive_manifest(archive) {
                assert_eq!(pushed.stdout, layout_manifest, "the {name} manifest is pushed byte for byte");
            }
        }
        // As a base: the image's layer is the first of the built image, referenced as it is.
        scratch.write("crates/worker/Dockerfile", &dockerfile.replace("FROM scratch", &format!("FROM {reference}")));
        let output = scratch.xtask(&["build", "worker", "--builder", "native", "--platform", "linux/amd64"]);
        assert!(output.status.success(), "FROM the {name} image failed:\n{}", stderr(&output));
        let base: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{reference}")]).stdout).unwrap();
        let layout = scratch.path().join("target/xtask/oci/worker");
        let read = |digest: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()).unwrap()
        };
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let built = read(read(index["manifests"][0]["digest"].as_str().unwrap())["manifests"][0]["digest"].as_str().unwrap());
        assert_eq!(built["layers"][0]["digest"], base["layers"][0]["digest"], "the {name} base layer is referenced unchanged");
    }
    // Every image is listed, whatever its manifest format.
    let listing = scratch.xtask(&["images", "worker", "--repository", &repository, "--json"]);
    assert!(listing.status.success(), "{}", stderr(&listing));
    let json: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let mut tags: Vec<String> = json["worker"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|image| image["tags"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    let mut expected: Vec<String> = corpus.iter().map(|(name, _)| format!("worker-{name}")).collect();
    expected.sort();
    assert_eq!(tags, expected);
}
