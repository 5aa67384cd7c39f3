//! The engine builder: a Dockerfile the native builder declines (RUN, several stages, ADD, ...)
//! is built by the Docker engine once per platform (`docker build --platform`), and the image it
//! saves (`docker save`) becomes layers and a config in the app's OCI layout; a buildx builder of
//! another driver than `docker` (docker-container, remote, kubernetes, cloud: BuildKit outside the
//! engine) has no image store to save from, and exports the image directly as an OCI archive
//! (`docker buildx build --output type=oci`), read the same way. The layers are
//! rewritten with modification times clamped to the build's epoch and compressed at the fixed
//! level, so that a rebuild of the same commit gives the same digests whenever the RUN steps
//! themselves are deterministic. The push engine pushes the result; `docker push` is never used.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::builder::native::BaseParts;
use crate::image::archive::{SavedArchive, SavedEntry, SavedLayer};
use crate::image::dockerfile;
use crate::image::dockerfile::cargo_stage::STAGE_CONTEXT;
use crate::image::layer;
use crate::image::layout::{DigestMismatch, Layout};
use crate::image::oci::{self, Descriptor, Digest, History, ImageConfig};
use crate::image::platform::Platform;
use crate::image::ImageParts;

/// An image the engine built and saved, and the layers of the base images it could start from.
pub struct SavedImage {
    pub archive: PathBuf,
    /// The base images, as the engine holds them for the platform.
    pub bases: Vec<EngineBase>,
}

/// A base image the engine held when it built: its layers (diff IDs), and how many entries its
/// history has, which the built image's history starts with.
pub struct EngineBase {
    pub layers: Vec<Digest>,
    pub history: usize,
}

/// One image the engine builds: its Dockerfile's path (for messages), the text it reads (the
/// Dockerfile as the build sees it: up to the image's stage, builder stages replaced), and every
/// build argument, the platform's included.
#[derive(Clone, Copy)]
pub struct Build<'a> {
    pub dockerfile: &'a str,
    pub text: &'a str,
    pub build_args: &'a [(String, String)],
    /// The directory the text's COPYs read as the named build context
    /// `cargo_stage::STAGE_CONTEXT` (`target/stage/`), when they do.
    pub stage_context: Option<&'a Path>,
    /// The images of this run the text starts FROM, which a builder outside the engine reads from
    /// their layouts (`Engine::reads_layouts`).
    pub local_images: &'a [LocalImage<'a>],
}

/// An image of this run that a build starts FROM by `name`: its platform image, in an OCI layout
/// that holds every blob of it.
pub struct LocalImage<'a> {
    pub name: &'a str,
    pub layout: &'a Path,
    pub manifest: &'a Digest,
}

/// A reachable Docker engine, and the builder that builds with it.
pub struct Engine<'a> {
    sh: &'a Shell,
    route: Route,
    /// The buildx builder named with `--engine-builder`; otherwise buildx's own choice
    /// (`BUILDX_BUILDER`, then the one `docker buildx use` selected).
    builder: Option<String>,
}

/// How an engine build becomes an archive the xtask reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Without the buildx plugin `docker build` is the legacy builder, which needs the platform's
    /// automatic build arguments passed and a stand-in for `scratch` (see `build`); then
    /// `docker save`.
    Legacy,
    /// BuildKit through buildx's `docker` driver, which puts the image into the engine's store:
    /// `docker build`, then `docker save`.
    Store,
    /// A buildx builder of another driver: `docker buildx build --output type=oci`.
    Export,
}

impl<'a> Engine<'a> {
    /// Reaches the Docker engine, and with buildx the builder `builder` names (or buildx's
    /// selected one) to learn its driver.
    pub fn connect(sh: &'a Shell, builder: Option<&str>) -> Result<Engine<'a>> {
        if cmd!(sh, "docker --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
            bail!(
                "the engine builder needs the docker command and a Docker engine, and `docker` is not installed: install Docker (`apt-get install docker.io` on Debian and Ubuntu, Docker Desktop elsewhere), or make the Dockerfile native so that `--builder native` can assemble it"
            );
        }
        let server_version = "{{.Server.Version}}";
        let version = cmd!(sh, "docker version --format {server_version}").quiet().ignore_status().output()?;
        if !version.status.success() {
            bail!(
                "cannot reach the Docker engine that the engine builder needs (`docker version` says: {}): start it (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at one",
                first_line(&String::from_utf8_lossy(&version.stderr))
            );
        }
        let buildx = cmd!(sh, "docker buildx version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
        let route = match (buildx, builder) {
            (false, Some(name)) => bail!(
                "--engine-builder {name} names a buildx builder, and this Docker has no buildx plugin: install it (`apt-get install docker-buildx`, or Docker's docker-buildx-plugin), or leave --engine-builder out to build with the engine's own builder"
            ),
            (false, None) => Route::Legacy,
            (true, _) => {
                let inspected = cmd!(sh, "docker buildx inspect {builder...}").quiet().ignore_status().output()?;
                let named = builder.map(str::to_string).or_else(|| std::env::var("BUILDX_BUILDER").ok().filter(|name| !name.is_empty()));
                match (inspected.status.success(), named) {
                    (true, _) => route_of(&String::from_utf8_lossy(&inspected.stdout)),
                    (false, Some(name)) => bail!(
                        "the buildx builder `{name}` does not answer (`docker buildx inspect` says: {}): `docker buildx ls` lists the builders; make one with `docker buildx create`, or name another with --engine-builder or BUILDX_BUILDER",
                        first_line(&String::from_utf8_lossy(&inspected.stderr))
                    ),
                    // buildx that cannot say: `docker build` reports what is wrong when it builds.
                    (false, None) => Route::Store,
                }
            }
        };
        Ok(Engine { sh, route, builder: builder.map(str::to_string) })
    }

    /// Builds `build` for `platform`, tags the result `xtask/<app>:<os>-<arch>` in the engine
    /// so it can be run locally, and saves it to an archive in `work`.
    /// `loaded` names the bases put into the engine beforehand (`load`), which are not pulled.
    pub fn build(
        &self,
        app: &str,
        build: &Build<'_>,
        platform: &Platform,
        context: &Path,
        work: &Path,
        loaded: &[&str],
    ) -> Result<SavedImage> {
        let Build { dockerfile, text, build_args, stage_context, local_images } = *build;
        if dockerfile::runs_commands(text) {
            check_emulation(platform)?;
        }
        let slug = platform.to_string().replace('/', "-");
        let legacy = self.route == Route::Legacy;
        if legacy {
            self.pull_bases(dockerfile, text, build_args, platform, loaded)?;
        }
        let text = if legacy { self.with_platform_scratch(text, platform, &slug)? } else { text.to_string() };
        std::fs::create_dir_all(work)?;
        let image_id_file = work.join(format!("{slug}.iid"));
        let archive = work.join(format!("{slug}.tar"));
        let tag = format!("xtask/{app}:{slug}");
        let mut command = Command::new("docker");
        command.current_dir(context);
        if let Some(builder) = &self.builder {
            command.env("BUILDX_BUILDER", builder);
        }
        if let (Some(_), Route::Legacy) = (stage_context, self.route) {
            bail!(
                "{dockerfile} reads the staged binaries from the named build context {STAGE_CONTEXT} (its .dockerignore leaves out target/stage/), which the legacy builder cannot give: install the buildx plugin, or add `!target/stage` to the .dockerignore"
            );
        }
        match self.route {
            Route::Legacy | Route::Store => {
                // A named build context needs buildx's own command (Docker 20.10's `docker build`
                // is the legacy builder even with the plugin installed).
                if stage_context.is_some() {
                    command.args(["buildx", "build", "--load"]);
                } else {
                    command.arg("build");
                }
                command.args(["--platform", &platform.to_string(), "--file", "-", "--tag", &tag, "--iidfile"]);
                command.arg(&image_id_file);
            }
            // The xtask attaches its own SBOM and provenance; BuildKit's would make the archive an
            // index of the image and its attestations.
            Route::Export => {
                command.args(["buildx", "build", "--platform", &platform.to_string(), "--file", "-", "--provenance=false", "--sbom=false"]);
                command.args(["--output", &oci_output(&archive)]);
            }
        }
        if let Some(stage) = stage_context {
            command.arg("--build-context").arg(format!("{STAGE_CONTEXT}={}", stage.display()));
        }
        // `FROM base` reads the named context `base`, which buildx sends from the layout.
        for image in local_images.iter().filter(|_| self.reads_layouts()) {
            command.arg("--build-context").arg(format!("{}=oci-layout://{}@{}", image.name, image.layout.display(), image.manifest));
        }
        for (name, value) in build_args {
            command.args(["--build-arg", &format!("{name}={value}")]);
        }
        command.arg(".");
        // The engine's output goes to standard error: standard output carries the results.
        command.stdin(Stdio::piped()).stdout(io::stderr()).stderr(io::stderr());
        let mut child = command.spawn().context("cannot run `docker build`")?;
        // A write error means docker exited early; its status and output say why.
        let _ = io::Write::write_all(&mut child.stdin.take().expect("stdin is piped"), text.as_bytes());
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "the Docker engine could not build {dockerfile} for {platform}: fix what it printed above (a RUN step that fails with `exec format error` needs qemu emulation: `apt-get install qemu-user-static binfmt-support` and `update-binfmts --enable`)"
            );
        }
        if self.route == Route::Export {
            // BuildKit outside the engine pulled the bases itself: the engine holds none of them.
            return Ok(SavedImage { archive, bases: Vec::new() });
        }
        let image_id = std::fs::read_to_string(&image_id_file)?.trim().to_string();
        let archive_arg = &archive;
        cmd!(self.sh, "docker save --output {archive_arg} {image_id}")
            .quiet()
            .run()
            .with_context(|| format!("`docker save` of the image built from {dockerfile} for {platform} failed"))?;
        let layers_format = "{{json .RootFS.Layers}}";
        let mut bases = Vec::new();
        for image in dockerfile::base_images(&text, build_args) {
            // BuildKit keeps the bases it pulls out of the engine's image store; those come from
            // a registry, and `import` matches their layers there instead.
            let Ok(layers) = cmd!(self.sh, "docker image inspect --format {layers_format} {image}").quiet().ignore_stderr().read() else {
                continue;
            };
            let history =
                cmd!(self.sh, "docker image history --quiet --no-trunc {image}").quiet().ignore_stderr().read().unwrap_or_default();
            bases.push(EngineBase {
                layers: serde_json::from_str::<Option<Vec<Digest>>>(&layers)?.unwrap_or_default(),
                history: history.lines().count(),
            });
        }
        Ok(SavedImage { archive, bases })
    }

    /// The engine's image store keeps one platform per tag, and the legacy builder uses whatever
    /// platform a base image's tag holds; so each base is pulled for the platform about to be
    /// built, which is cheap when its layers are already there.
    fn pull_bases(
        &self,
        dockerfile: &str,
        text: &str,
        build_args: &[(String, String)],
        platform: &Platform,
        loaded: &[&str],
    ) -> Result<()> {
        let platform_text = platform.to_string();
        for image in dockerfile::base_images(text, build_args).into_iter().filter(|image| !loaded.contains(&image.as_str())) {
            cmd!(self.sh, "docker pull --quiet --platform {platform_text} {image}").quiet().ignore_stdout().run().with_context(|| {
                format!("the Docker engine could not pull {image} for {platform}, a base image of {dockerfile}: check that the image exists for that platform and that `docker login` was run for its registry")
            })?;
        }
        Ok(())
    }

    /// Whether the builder runs outside the engine, and reads the images of this run a build
    /// starts FROM from their layouts (`Build::local_images`) rather than from the engine's store,
    /// which it does not see.
    pub fn reads_layouts(&self) -> bool {
        self.route == Route::Export
    }

    /// Loads an image archive (`docker save`'s format) into the engine, under its own tags, for
    /// the builders that read the engine's store.
    pub fn load(&self, archive: &Path) -> Result<()> {
        cmd!(self.sh, "docker load --quiet --input {archive}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("`docker load` did not take the image in {}: see what it printed above", archive.display()))
    }

    /// The legacy builder records the host's architecture on a `FROM scratch` stage whose first
    /// instruction writes no files (`ARG TARGETPLATFORM` does that), then refuses the stage's next
    /// COPY as being of the wrong platform. An empty image of the right platform in place of
    /// `scratch` behaves the same and avoids that; it is made once per platform.
    fn with_platform_scratch(&self, text: &str, platform: &Platform, slug: &str) -> Result<String> {
        let image = format!("xtask/scratch:{slug}");
        let replaced = dockerfile::replace_scratch(text, &image);
        if replaced == text || cmd!(self.sh, "docker image inspect {image}").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
            return Ok(replaced);
        }
        let archive = empty_image_archive(platform, &image)?;
        cmd!(self.sh, "docker load --quiet")
            .stdin(archive)
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot load the empty platform image into the Docker engine")?;
        Ok(replaced)
    }
}

/// Loads an archive that `image::archive::write_archive` wrote, named `tags`, into the machine's
/// engine: Docker when one answers, podman when that is what the machine has. The tags after the
/// first are set once the image is in: podman names an image from an OCI archive once. Returns
/// the program used.
pub fn load_archive(sh: &Shell, archive: &Path, tags: &[String]) -> Result<&'static str> {
    let server_version = "{{.Server.Version}}";
    let program = if cmd!(sh, "docker version --format {server_version}").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        "docker"
    } else if cmd!(sh, "podman --version").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        "podman"
    } else {
        bail!(
            "--load puts the image into the local Docker engine (or podman), and neither answers here: start Docker (`sudo systemctl start docker`, Docker Desktop) or install podman, or build without --load and push the layout"
        );
    };
    cmd!(sh, "{program} load --quiet --input {archive}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("`{program} load` did not take the image in {}: see what it printed above", archive.display()))?;
    if let [first, others @ ..] = tags {
        for tag in others {
            cmd!(sh, "{program} tag {first} {tag}")
                .quiet()
                .run()
                .with_context(|| format!("`{program} tag` could not name the image {tag}"))?;
        }
    }
    Ok(program)
}

/// A `docker load` archive of an image without layers for `platform`, tagged `tag`.
fn empty_image_archive(platform: &Platform, tag: &str) -> Result<Vec<u8>> {
    let config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        rootfs: oci::RootFs { kind: "layers".into(), diff_ids: Vec::new() },
        ..ImageConfig::default()
    };
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": []}]);
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes) in [("config.json", oci::to_bytes(&config)), ("manifest.json", manifest.to_string().into_bytes())] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        archive.append_data(&mut header, name, &bytes[..])?;
    }
    Ok(archive.into_inner()?)
}

/// On Linux, an image of another architecture runs its RUN steps through a binfmt handler
/// (qemu-user-static registers them); without one, the build fails with `exec format error`
/// half-way, so it is checked before.
fn check_emulation(platform: &Platform) -> Result<()> {
    let remote = std::env::var("DOCKER_HOST").is_ok_and(|host| !host.is_empty() && !host.starts_with("unix://"));
    let Some(qemu) = emulator(Platform::host().architecture.as_str(), &platform.architecture) else {
        return Ok(());
    };
    if remote || !cfg!(target_os = "linux") {
        return Ok(());
    }
    let handler = Path::new("/proc/sys/fs/binfmt_misc").join(qemu);
    let enabled = std::fs::read_to_string(&handler).is_ok_and(|state| state.lines().next() == Some("enabled"));
    if !enabled {
        bail!(
            "building {platform} runs the Dockerfile's RUN steps under emulation on this {} machine, and no binfmt handler `{qemu}` is registered: install one with `apt-get install qemu-user-static binfmt-support && update-binfmts --enable`, then build again",
            Platform::host().architecture.as_str()
        );
    }
    Ok(())
}

/// The binfmt handler qemu-user-static registers for running `target` binaries on `host`, or
/// none when no emulation is needed.
fn emulator(host: &str, target: &str) -> Option<&'static str> {
    if host == target || (host == "amd64" && target == "386") || (host == "arm64" && target == "arm") {
        return None;
    }
    Some(match target {
        "amd64" => "qemu-x86_64",
        "arm64" => "qemu-aarch64",
        "arm" => "qemu-arm",
        "386" => "qemu-i386",
        "ppc64le" => "qemu-ppc64le",
        "s390x" => "qemu-s390x",
        "riscv64" => "qemu-riscv64",
        _ => return None,
    })
}

/// Reads a `docker save` archive into `layout`. The layers the image shares with a base image
/// that `bases` (read from its registry) holds keep the base's bytes: the layout references the
/// base's blobs, which the push mounts from the base's repository. Every other layer is streamed
/// from the archive, checked against the diff ID the engine recorded, rewritten reproducibly
/// (`layer::normalise_layer`) and stored by digest: a base's layer that no registry offers keeps
/// its times, so it stays the same from one commit to the next, and every later layer's files
/// get `epoch` as their time. The configuration is kept, the history's times of the engine's own
/// steps set to `epoch` (the base's entries keep theirs).
pub fn import(saved: &SavedImage, bases: &[BaseParts<'_>], layout: &Layout, epoch: u64) -> Result<ImageParts> {
    let archive = SavedArchive::read(&saved.archive)?;
    let SavedEntry { config, layers: saved_layers, .. } = archive.entry()?;
    let shared = |base: &[Digest]| base.iter().zip(&config.rootfs.diff_ids).take_while(|(base, built)| base == built).count();
    // The base from a registry that shares the most leading layers with the image: those keep
    // the base's bytes and are mounted from its repository.
    let (from_registry, registry_base) = bases
        .iter()
        .map(|base @ (_, (base_manifest, base_config))| (shared(&base_config.rootfs.diff_ids).min(base_manifest.layers.len()), base))
        .max_by_key(|(count, _)| *count)
        .map_or((0, None), |(count, base)| (count, Some(base)));
    // Layers of a base the engine holds but no registry offers keep their own times.
    let engine_base = saved.bases.iter().max_by_key(|base| shared(&base.layers)).filter(|base| shared(&base.layers) > 0);
    let from_engine_base = engine_base.map_or(0, |base| shared(&base.layers));
    let from_base = from_engine_base.max(from_registry);
    // The history entries that are the base's: its own count, from its registry or the engine.
    let base_history = match (registry_base, engine_base) {
        (Some((_, (_, base_config))), _) if from_registry > 0 && from_registry >= from_engine_base => base_config.history.len(),
        (_, Some(base)) => base.history,
        _ => 0,
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (position, (saved_layer, expected)) in saved_layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        if let (true, Some((source, (base_manifest, _)))) = (position < from_registry, registry_base) {
            let layer = base_manifest.layers[position].clone();
            if !layout.has_blob(&layer.digest) {
                layout.record_foreign(&layer.digest, source)?;
            }
            layers.push(layer);
            diff_ids.push(expected.clone());
            continue;
        }
        let mtime = (position >= from_base).then_some(epoch);
        let (layer, diff_id) = import_layer(&archive, saved_layer, expected, mtime, layout)?;
        layers.push(layer);
        diff_ids.push(diff_id);
    }
    let created = oci::rfc3339(epoch);
    // The base's entries keep their times, as BuildKit keeps them; the steps the engine ran,
    // timed when it ran them (or when its cache did), get the epoch, as BuildKit gives them
    // with SOURCE_DATE_EPOCH.
    let history = config
        .history
        .into_iter()
        .enumerate()
        .map(|(position, entry)| match position < base_history {
            true => entry,
            false => History { created: Some(created.clone()), ..entry },
        })
        .collect();
    let mut container_config = config.config;
    // The legacy builder records the ID of the image the last step ran in, which is new whenever
    // the engine's cache is not used: it names nothing outside that engine, and would make every
    // rebuild a new image.
    container_config.other.remove("Image");
    Ok(ImageParts { layers, diff_ids, history, config: container_config, author: config.author })
}

/// Streams `saved` into `layout`, rewritten with `mtime` (or its own times), after checking that
/// its tar hashes to `expected`, the diff ID the engine recorded.
fn import_layer(
    archive: &SavedArchive,
    saved: &SavedLayer,
    expected: &Digest,
    mtime: Option<u64>,
    layout: &Layout,
) -> Result<(Descriptor, Digest)> {
    let path = &saved.member;
    let mut original = layer::Hashing::new(archive.open_layer(saved)?);
    let mut writer = layout.blob_writer()?;
    let diff_id =
        layer::normalise_layer(&mut original, mtime, &mut writer).with_context(|| format!("{}: layer {path}", archive.unreadable()))?;
    // The tar reader stops at the end-of-archive marker; the rest is padding, hashed too.
    io::copy(&mut original, &mut io::sink())?;
    DigestMismatch::check(expected, original.digest()).with_context(|| format!("{}: layer {path}", archive.unreadable()))?;
    let (digest, size) = writer.finish(None)?;
    Ok((Descriptor::of_blob(oci::MEDIA_TYPE_LAYER_GZIP, digest, size), diff_id))
}

/// The driver `docker buildx inspect` names, as a route: every driver but `docker` is BuildKit
/// outside the engine.
fn route_of(inspected: &str) -> Route {
    let driver = inspected.lines().find_map(|line| line.strip_prefix("Driver:")).map(str::trim);
    match driver {
        Some("docker") | None => Route::Store,
        Some(_) => Route::Export,
    }
}

/// buildx's `--output` for an OCI archive at `archive`; the value is CSV, so the path is quoted.
fn oci_output(archive: &Path) -> String {
    format!("type=oci,\"dest={}\"", archive.display().to_string().replace('"', "\"\""))
}

fn first_line(text: &str) -> &str {
    text.lines().find(|line| !line.trim().is_empty()).unwrap_or(text).trim()
}

#[cfg(test)]
mod tests {

    use std::fs::File;
    use std::io::Read;

    use super::*;
    use crate::image::archive::fixtures::{self, Docker};

    #[test]
    fn builders_outside_the_engine_export_their_images() {
        let check = |inspected: &str, expected: Route| assert_eq!(route_of(inspected), expected, "{inspected}");
        check("Name:   default\nDriver: docker\n\nNodes:\nName: default\n", Route::Store);
        check("Name:          ci\nDriver:        docker-container\nLast Activity: 2026-12-06\n", Route::Export);
        check("Name:   remote\nDriver: remote\n", Route::Export);
        check("Name:   k\nDriver: kubernetes\n", Route::Export);
        check("Name:   cloud-acme\nDriver: cloud\n", Route::Export);
        check("", Route::Store);
        assert_eq!(oci_output(Path::new("/w/a,b \"c\".tar")), r#"type=oci,"dest=/w/a,b ""c"".tar""#);
    }

    #[test]
    fn emulation_is_needed_only_across_architectures() {
        assert_eq!(emulator("amd64", "amd64"), None);
        assert_eq!(emulator("amd64", "arm64"), Some("qemu-aarch64"));
        assert_eq!(emulator("arm64", "amd64"), Some("qemu-x86_64"));
        assert_eq!(emulator("arm64", "arm"), None);
        assert_eq!(emulator("amd64", "riscv64"), Some("qemu-riscv64"));
    }

    fn saved_archive(layer_files: &[(&str, &[u8])], diff_id_override: Option<&str>) -> Vec<u8> {
        fixtures::saved_archive(Docker::V20, layer_files, diff_id_override)
    }

    /// The diff ID the engine recorded for the archive's only layer.
    fn image_diff_id(archive: &[u8]) -> Digest {
        let mut archive = tar::Archive::new(archive);
        let mut entry = archive.entries().unwrap().map(Result::unwrap).find(|entry| entry.path().unwrap().ends_with("layer.tar")).unwrap();
        let mut layer = Vec::new();
        entry.read_to_end(&mut layer).unwrap();
        Digest::of(&layer)
    }

    fn import_bytes(archive: &[u8], base_layers: Vec<Vec<Digest>>) -> Result<(ImageParts, tempfile::TempDir)> {
        let bases = base_layers.into_iter().map(|layers| EngineBase { layers, history: 1 }).collect();
        let dir = tempfile::tempdir().unwrap();
        let archive_path = dir.path().join("image.tar");
        std::fs::write(&archive_path, archive).unwrap();
        let layout = Layout::create(&dir.path().join("layout")).unwrap();
        let saved = SavedImage { archive: archive_path, bases };
        Ok((import(&saved, &[], &layout, 1_700_000_000)?, dir))
    }

    fn layer_times(dir: &Path, layer: &Descriptor) -> Vec<u64> {
        let file = File::open(dir.join("layout/blobs/sha256").join(layer.digest.hex())).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive.entries().unwrap().map(|entry| entry.unwrap().header().mtime().unwrap()).collect()
    }

    #[test]
    fn every_archive_format_gives_the_same_image() {
        let (v20, _dir) = import_bytes(&saved_archive(&[("worker", b"\x7fELF binary")], None), Vec::new()).unwrap();
        // Docker 25 names the configuration by digest; with the containerd image store it saves
        // the layers gzip, as BuildKit exports them (where an index also holds attestations).
        for docker in [Docker::V25, Docker::V25Containerd, Docker::BuildKitOci] {
            let archive = fixtures::saved_archive(docker, &[("worker", b"\x7fELF binary")], None);
            let (image, _dir) = import_bytes(&archive, Vec::new()).unwrap();
            assert_eq!((&image.layers, &image.diff_ids, &image.config), (&v20.layers, &v20.diff_ids, &v20.config));
        }
    }

    #[test]
    fn saved_images_become_reproducible_layers_and_configs() {
        let archive = saved_archive(&[("worker", b"\x7fELF binary")], None);
        let (image, dir) = import_bytes(&archive, Vec::new()).unwrap();
        assert_eq!(layer_times(dir.path(), &image.layers[0]), [1_700_000_000]);
        let config = serde_json::to_string(&image.config).unwrap();
        expect_test::expect![[r#"{"Env":["PATH=/bin"],"Entrypoint":["/worker"],"Volumes":{"/data":{}},"Healthcheck":{"Test":["CMD","/worker","--check"],"Retries":2},"OnBuild":["RUN make"],"Shell":["/bin/bash","-c"]}"#]]
            .assert_eq(&config);
        expect_test::expect![[r#"[{"created":"2023-11-14T22:13:20Z","created_by":"/bin/sh -c #(nop) COPY file:ca15 in /worker "},{"created":"2023-11-14T22:13:20Z","created_by":"/worker","empty_layer":true}]"#]]
            .assert_eq(&serde_json::to_string(&image.history).unwrap());
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.diff_ids.len(), 1);
        // A layer the base image has keeps its times.
        let (from_base, dir) = import_bytes(&archive, vec![vec![image_diff_id(&archive)]]).unwrap();
        assert_eq!(layer_times(dir.path(), &from_base.layers[0]), [2_000_000_000]);
        assert_eq!(from_base.diff_ids, [image_diff_id(&archive)]);
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_refused() {
        let wrong = format!("sha256:{}", "0".repeat(64));
        let Err(err) = import_bytes(&saved_archive(&[("worker", b"binary")], Some(&wrong)), Vec::new()) else {
            panic!("a corrupt layer was accepted");
        };
        let mismatch = err.downcast_ref::<DigestMismatch>().expect("a DigestMismatch");
        assert_eq!(mismatch.expected.to_string(), wrong);
        assert!(format!("{err:#}").contains("layer 3333/layer.tar"), "{err:#}");
    }
}
