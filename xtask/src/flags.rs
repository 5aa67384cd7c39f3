//! Every command-line flag, parsed once in `main`.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", version, about = "Build the workspace's apps into multi-arch OCI images and push them to one repository")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the apps whose image must be rebuilt between two commits
    Changed(Changed),
    /// Build apps' multi-arch images into OCI image layouts under target/xtask/oci/
    Build(Build),
    /// Push an OCI image layout (image or index) or a `docker save` archive to a registry or another layout
    Push(Push),
    /// Assemble one Dockerfile's image without an engine, as BuildKit would build it, into an OCI
    /// image layout; a Dockerfile that needs an engine is refused with the line and why
    Assemble(Assemble),
    /// Detect changed apps, build them and push `<app>-<sha>` and `<app>-latest`
    Release(Release),
    /// List each app's images in the repository, newest first
    Images(Images),
    /// Point `<app>-latest` at the image released as `<app>-<sha>` (one manifest PUT)
    Rollback(Rollback),
    /// Copy an app's released image from one environment's repository to another's
    Promote(Promote),
    /// Delete an app's images beyond the newest N, never the one `<app>-latest` names
    Prune(Prune),
    /// Delete an app's images by tag (deleting an image deletes all of its tags)
    Delete(Delete),
    /// Join the platform images that `release --by-digest` jobs pushed into one index per app,
    /// and move the tags once every platform is there
    Merge(Merge),
    /// Check an app's released image: its cosign signature by a key, and its signed provenance
    Verify(Verify),
    /// Manage the shared ECR repository
    Ecr(Ecr),
    /// Install or remove the git pre-push hook that builds the apps a push changes
    Hook(Hook),
    /// Print a shell completion script for `xtask` (use with `alias xtask='cargo xtask'`)
    Completions(Completions),
    /// Bring the xtask into the Cargo workspace at PATH (run from the xtask's repository), or
    /// upgrade the copy there: a workspace of its own, a `cargo xtask` alias, its images listed
    Adopt(Adopt),
}

#[derive(Args, Debug)]
pub struct Adopt {
    /// The root of the Cargo workspace
    pub path: std::path::PathBuf,
    /// Print what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Exit 1 when the copy there is not current (as `dist generate --check`)
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct Images {
    /// Only this app
    pub app: Option<String>,
    /// The repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
    /// Print JSON: app → images (digest, tags, created, revision, platforms, size)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct Rollback {
    /// The app whose `-latest` tag moves
    pub app: String,
    /// The commit whose release `-latest` names afterwards (a short sha is expanded by git)
    #[arg(long, value_name = "SHA")]
    pub to: String,
    /// The repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct Prune {
    /// The app whose images are pruned
    pub app: String,
    /// How many of the newest images to keep
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// The repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
    /// Print what would be deleted, and delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct Delete {
    /// The app whose images are deleted
    pub app: String,
    /// A tag naming an image to delete (repeatable); every tag of that image must be named
    #[arg(long = "tag", value_name = "TAG", required = true)]
    pub tags: Vec<String>,
    /// The repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
    /// Print what would be deleted, and delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct Promote {
    /// The app to promote
    pub app: String,
    /// The source: an environment of [workspace.metadata.xtask.environments] or a repository
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// The destination: an environment or a repository
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// The tag to promote (default: `<app>-latest`); the image's `<app>-<sha>` comes along
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct Ecr {
    #[command(subcommand)]
    pub command: EcrCommand,
}

#[derive(Subcommand, Debug)]
pub enum EcrCommand {
    /// Create or update the repository from [workspace.metadata.xtask.ecr]: scan on push, tag
    /// mutability, encryption and a lifecycle policy per app
    Setup(EcrSetup),
    /// Print the least-privilege IAM policy the commands need
    Policy(EcrPolicy),
}

#[derive(Args, Debug)]
pub struct EcrSetup {
    /// The ECR repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
    /// Print what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct EcrPolicy {
    /// The ECR repository the policy grants (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct Hook {
    #[command(subcommand)]
    pub command: HookCommand,
}

#[derive(Subcommand, Debug)]
pub enum HookCommand {
    /// Write the pre-push hook; a hook already there is kept and runs first
    Install,
    /// Remove the hook `install` wrote and put back the one it found
    Uninstall,
    /// What the hook runs: builds the apps the refs git passes on standard input change
    Run {
        /// The remote's name, as git passes it
        remote: Option<String>,
        /// The remote's URL, as git passes it
        url: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct Completions {
    /// The shell: bash, elvish, fish, powershell or zsh
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct Changed {
    /// The commit to compare against (default: the merge-base with the default branch, or the
    /// parent commit when HEAD is on it)
    #[arg(long)]
    pub base: Option<String>,
    /// The commit whose apps are wanted (default: HEAD)
    #[arg(long)]
    pub head: Option<String>,
    /// Select every app
    #[arg(long)]
    pub all: bool,
    /// Compare the base with the work tree, uncommitted and untracked files included
    #[arg(long, conflicts_with = "head")]
    pub include_uncommitted: bool,
    /// What to do when the base cannot be found (shallow clone, unknown ref): `all` selects
    /// every app and says why; without it that is an error
    #[arg(long, value_parser = ["all"])]
    pub fallback: Option<String>,
    /// Print why APP is selected: the chain from each changed file to the app
    #[arg(long, value_name = "APP")]
    pub explain: Option<String>,
    /// Exit with 1 when an app changed (or was deleted), 0 when none did; errors exit with 2
    #[arg(long)]
    pub exit_code: bool,
    /// Print a JSON object (`base`, `head`, `apps` with typed `reasons`, `deleted`, and with
    /// --shards `shards`)
    #[arg(long)]
    pub json: bool,
    /// Also split the selected apps into CI jobs: at most N balanced jobs of apps that
    /// cross-compile, and one job per platform for apps with RUN steps (pushing by digest)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: Option<u16>,
    /// Also select apps whose image of their current inputs is missing from the repository
    /// (`unreleased` or `stale` reasons), as `release` does
    #[arg(long, conflicts_with = "include_uncommitted")]
    pub against_registry: bool,
    /// The repository --against-registry looks in (default: as for `release`)
    #[arg(long, requires = "against_registry")]
    pub repository: Option<String>,
    /// A PEM file of extra CA certificates, trusted for the command's own registry only; `HOST=PEM`
    /// trusts it for HOST instead (also XTASK_CA_FILE)
    #[arg(long, value_name = "PEM", env = "XTASK_CA_FILE", requires = "against_registry")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Selection {
    /// Apps to select by package name (default: the changed ones)
    #[arg(value_name = "APP")]
    pub apps: Vec<String>,
    /// Select every app
    #[arg(long, conflicts_with = "apps")]
    pub all: bool,
    /// Leave these apps out (repeatable)
    #[arg(long, value_name = "APP")]
    pub exclude: Vec<String>,
    /// The commit that changes are detected against
    #[arg(long)]
    pub base: Option<String>,
    /// Image platforms, comma-separated (default: `platforms` in [workspace.metadata.xtask] or
    /// XTASK_PLATFORMS)
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// How images are built: `native` assembles them without a daemon, `engine` builds them with
    /// the Docker engine (needed for RUN, several stages, ADD), `auto` takes native when the
    /// Dockerfile allows it and says which it took
    #[arg(long, value_enum, default_value_t = Builder::Auto)]
    pub builder: Builder,
    /// The buildx builder that builds what needs an engine (default: BUILDX_BUILDER, else the one
    /// `docker buildx use` selected); one of another driver than `docker` (docker-container,
    /// remote, kubernetes, cloud) exports each image as an OCI archive instead of `docker save`
    #[arg(long, value_name = "NAME")]
    pub engine_builder: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    Auto,
    Native,
    Engine,
}

#[derive(Args, Debug)]
pub struct Build {
    #[command(flatten)]
    pub selection: Selection,
    /// Select the apps changed since --base (the default when no app is named)
    #[arg(long, conflicts_with_all = ["apps", "all"])]
    pub changed: bool,
    /// Also put each image into the local Docker engine (or podman) as `<app>:latest` and
    /// `<app>:<sha>`: the host's platform, or the one --platform names
    #[arg(long)]
    pub load: bool,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct Push {
    /// The OCI image layout to push: `DIR` or `DIR:REF` (`oci:` prefix allowed) where REF names an
    /// entry of the layout's index.json; without REF the layout must hold exactly one entry. Or a
    /// `docker save` archive (`FILE.tar`, either format) of one image
    pub layout: String,
    /// Where to: `registry/repository:tag`, or `oci:DIR:tag` for another layout
    pub reference: String,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct Assemble {
    /// The build context: the directory COPY reads from
    #[arg(default_value = ".")]
    pub context: std::path::PathBuf,
    /// The Dockerfile (default: Dockerfile in the context)
    #[arg(long, short = 'f')]
    pub file: Option<std::path::PathBuf>,
    /// Image platforms, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "linux/amd64,linux/arm64")]
    pub platform: Vec<String>,
    /// A value for an ARG of the Dockerfile (repeatable)
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The OCI image layout to write the index into, tagged `latest`: `DIR` or `DIR:TAG`
    #[arg(long, short = 'o')]
    pub output: String,
}

#[derive(Args, Debug, Clone)]
pub struct Transfer {
    /// How many blobs upload at once (existence checks and manifests do not wait for these)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Upload blobs in PATCH chunks of this many MiB (at least 5) instead of one PUT, for
    /// registries that limit request sizes; without it, chunks are used only after a 413 answer
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..=4096))]
    pub chunk_size: Option<u64>,
    /// Another repository of the same registry whose blobs may be mounted instead of uploaded
    /// (repeatable); a registry that declines the mount gets an upload
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    /// A PEM file of extra CA certificates, trusted for the command's own registry only; `HOST=PEM`
    /// trusts it for HOST instead (also XTASK_CA_FILE)
    #[arg(long, value_name = "PEM", env = "XTASK_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for Transfer {
    /// The values the flags default to, for commands that only read from registries.
    fn default() -> Transfer {
        Transfer { jobs: 4, chunk_size: None, mount_from: Vec::new(), ca_file: std::env::var_os("XTASK_CA_FILE").map(Into::into) }
    }
}

#[derive(Args, Debug)]
pub struct Release {
    #[command(flatten)]
    pub selection: Selection,
    /// The one repository every app is pushed to: `registry/path` or `oci:DIR` (default:
    /// `repository` in [workspace.metadata.xtask] or XTASK_REPOSITORY, else oci:target/registry)
    #[arg(long)]
    pub repository: Option<String>,
    /// Print what would be built, pushed and tagged, and touch nothing
    #[arg(long)]
    pub dry_run: bool,
    /// More tags per app, each one manifest PUT (repeatable): `semver` gives `<app>-v<crate
    /// version>`, `date` gives `<app>-<YYYYMMDD>` of the commit, anything else `<app>-<it>`
    /// (for instance `staging`)
    #[arg(long, value_name = "RULE")]
    pub tag_extra: Vec<String>,
    /// Do not move `<app>-latest`
    #[arg(long)]
    pub no_latest: bool,
    /// Release even with uncommitted changes (the sha tag would then not describe the image)
    #[arg(long)]
    pub allow_dirty: bool,
    /// Run `cargo xtask ecr setup` first, so the repository exists with its settings
    #[arg(long)]
    pub create_repository: bool,
    /// Select changed apps by the git diff alone; by default the apps whose image of their
    /// current inputs is missing from the repository are released too
    #[arg(long)]
    pub git_only: bool,
    /// Print a JSON summary instead of text
    #[arg(long)]
    pub json: bool,
    /// Scan gate on ECR: each image is pushed untagged, scanned, and tagged only when it has at
    /// most this many CRITICAL findings (default: `max-critical` in [workspace.metadata.xtask.ecr])
    #[arg(long, value_name = "N")]
    pub max_critical: Option<u32>,
    /// Scan gate on ECR: at most this many HIGH findings (default: `max-high` in the same table)
    #[arg(long, value_name = "N")]
    pub max_high: Option<u32>,
    /// A checkout of the RustSec advisory database (rustsec/advisory-db): with --max-critical or
    /// --max-high, the exact crates of each app are checked against it too, on any repository
    /// (default: `advisory-db` in [workspace.metadata.xtask.supply-chain]; on ECR else
    /// ~/.cargo/advisory-db, cloned when missing)
    #[arg(long, value_name = "DIR", env = "XTASK_ADVISORY_DB")]
    pub advisory_db: Option<std::path::PathBuf>,
    /// How long the scan gate waits for a scan (default: `scan-timeout-seconds`, else 600)
    #[arg(long, value_name = "SECONDS")]
    pub scan_timeout: Option<u64>,
    /// Attach to every platform image an SPDX 2.3 bill of materials of the crates its binary
    /// compiles and a SLSA provenance statement, as OCI 1.1 artifacts (referrers API, or the
    /// `sha256-<hex>` tag schema where the registry lacks it); existing ones are kept. The
    /// default, unless `attest = false` in [workspace.metadata.xtask.supply-chain]
    #[arg(long)]
    pub attest: bool,
    /// Attach no bill of materials or provenance, whatever the configuration says
    #[arg(long, conflicts_with = "attest")]
    pub no_attest: bool,
    /// Sign each index as `cosign sign --key` does (and, with --attest, the provenance as a DSSE
    /// envelope) with this ECDSA P-256 key: a PEM file (PKCS#8 or SEC1, or cosign's encrypted
    /// cosign.key with COSIGN_PASSWORD), or `env://VAR` (default: `sign` in
    /// [workspace.metadata.xtask.supply-chain]); a --by-digest job signs the provenance, `merge`
    /// the indexes
    #[arg(long, value_name = "KEY")]
    pub sign: Option<String>,
    /// Sign nothing, whatever the configuration says (a local release without the key)
    #[arg(long, conflicts_with = "sign")]
    pub no_sign: bool,
    /// Push each app's platform images (blobs and manifests) by digest, untagged, and print them
    /// as JSON for `merge`: one job per platform, each on its own runner
    #[arg(long, conflicts_with_all = ["tag_extra", "no_latest", "max_critical", "max_high", "json"])]
    pub by_digest: bool,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct Verify {
    /// `APP` (its `<app>-latest`) or `APP@TAG`
    pub image: String,
    /// The public key (PEM, as cosign.pub)
    #[arg(long)]
    pub key: std::path::PathBuf,
    /// The repository (default: as for `release`)
    #[arg(long)]
    pub repository: Option<String>,
    /// A PEM file of extra CA certificates for the registry (also XTASK_CA_FILE)
    #[arg(long, value_name = "PEM", env = "XTASK_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Merge {
    /// The JSON that each `release --by-digest` job printed, saved to a file (`-`: standard input)
    #[arg(required = true, value_name = "FILE")]
    pub records: Vec<std::path::PathBuf>,
    /// The repository the jobs pushed to (default: the one their records name)
    #[arg(long)]
    pub repository: Option<String>,
    /// The platforms every app's index must hold, comma-separated (default: as for `release`)
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// More tags per app, as for `release`
    #[arg(long, value_name = "RULE")]
    pub tag_extra: Vec<String>,
    /// Do not move `<app>-latest`
    #[arg(long)]
    pub no_latest: bool,
    /// Sign each index it writes as `release --sign` does, before its tags move (default: `sign`
    /// in [workspace.metadata.xtask.supply-chain])
    #[arg(long, value_name = "KEY")]
    pub sign: Option<String>,
    /// Sign nothing, whatever the configuration says
    #[arg(long, conflicts_with = "sign")]
    pub no_sign: bool,
    /// A PEM file of extra CA certificates for the registry (also XTASK_CA_FILE)
    #[arg(long, value_name = "PEM", env = "XTASK_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}
