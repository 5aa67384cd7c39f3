//! `cargo xtask release`: selects apps (named, --all, or changed), builds their multi-arch
//! images and pushes each index to the one repository as `<app>-<sha>`, then `<app>-latest`.

use std::time::Instant;

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use tokio::sync::watch;

use crate::aws::scan::{self, ScanGate, Thresholds};
use crate::builder::{BuildWith, Builder, BuiltImage, DeferredInputs, Provenance};
use crate::context::Context;
use crate::detect::advisories;
use crate::detect::evidence;
use crate::detect::heal::{self, Released};
use crate::detect::inputs::AppInputs;
use crate::detect::{self, SelectedApp};
use crate::flags;
use crate::image::layout::Layout;
use crate::image::oci::{Descriptor, Digest, ImageIndex};
use crate::image::reference::{validate_tag, Repositories};
use crate::image::signature::Key;
use crate::progress::{AppLine, Progress};
use crate::repository::push::{PushReport, Pusher};
use crate::repository::{by_digest, referrers, signatures};
use crate::workspace::config::{self, Config, Overrides};
use crate::workspace::git::Git;

#[derive(Serialize)]
struct Summary<'a> {
    repository: String,
    revision: &'a str,
    dry_run: bool,
    apps: Vec<AppSummary>,
    /// The workspace's other apps, each with why it is not released.
    skipped: Vec<SkippedApp>,
}

#[derive(Serialize)]
struct SkippedApp {
    name: String,
    why: String,
}

#[derive(Serialize, Clone)]
struct AppSummary {
    name: String,
    /// Its own repository, when each app has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    reasons: Vec<detect::Reason>,
    platforms: Vec<String>,
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<PushReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Seconds this app's push took (the build is shared by all apps).
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    /// The scan gate's findings per platform, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<Vec<scan::PlatformScan>>,
    /// The RustSec advisories against its crates, when the gate is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    advisories: Option<Vec<advisories::Finding>>,
    /// How many attestations (with --attest) were attached; those already there are not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    attached: Option<usize>,
}

/// What a release tags an app with, besides the commit.
pub struct TagPlan<'a> {
    pub revision: &'a str,
    /// The commit's date as `YYYYMMDD`, for `date` tags.
    pub date: &'a str,
    pub extra: &'a [String],
    pub latest: bool,
    /// Every app of the workspace: in a shared repository, a tag another app's prefix owns is
    /// refused.
    pub apps: &'a [String],
    /// Whether each app's tags carry its name (a shared repository) or not (its own).
    pub repositories: &'a Repositories,
}

/// The tags an app's index gets, in the order they are written: the immutable sha tag first,
/// then the extra tags, and `-latest` last, so that it never names an image that lacks the others.
pub fn release_tags(app: &str, version: &str, plan: &TagPlan<'_>) -> Result<Vec<String>> {
    let tag = |what: &str| plan.repositories.tag(app, what);
    let mut tags = vec![tag(plan.revision)];
    for rule in plan.extra {
        tags.push(match rule.as_str() {
            "semver" => tag(&format!("v{version}")),
            "date" => tag(plan.date),
            suffix => tag(suffix),
        });
    }
    if plan.latest {
        tags.push(tag("latest"));
    }
    for tag in &tags {
        validate_tag(tag).with_context(|| format!("app `{app}` gets an invalid tag; rename the package or change --tag-extra"))?;
        if plan.repositories.per_image() {
            continue;
        }
        // `hello` with `api-latest` would write `hello-api-latest`, app hello-api's tag: listing,
        // pruning and rollback take a tag for the app whose name is its longest prefix.
        if let Some(owner) =
            plan.apps.iter().filter(|other| *other != app && tag.starts_with(&format!("{other}-"))).max_by_key(|other| other.len())
        {
            if owner.len() > app.len() {
                bail!("--tag-extra gives app `{app}` the tag `{tag}`, which belongs to app `{owner}` (its tags start `{owner}-`): choose a rule that does not start with `{}`", &owner[app.len() + 1..]);
            }
        }
    }
    tags.dedup();
    Ok(tags)
}

pub async fn run(ctx: &Context, args: flags::Release) -> Result<()> {
    let release = Release::prepare(ctx, &args).await?;
    let selection = release.select().await?;
    let mut summary = release.plan(&selection)?;
    if selection.apps.is_empty() || args.dry_run {
        return print_summary(&summary, args.json);
    }
    let lines = release.app_lines(&selection);
    let images = release.build(&selection).await?;
    if args.by_digest {
        let pushed = release.push_by_digest(&images, lines).await?;
        println!("{}", serde_json::to_string_pretty(&pushed)?);
        return Ok(());
    }
    let failures = release.push_gate_and_tag(&images, lines, &mut summary).await;
    print_summary(&summary, args.json)?;
    write_github_outputs(&summary)?;
    if !failures.is_empty() {
        bail!("{} of {} apps failed to release, and their tags were not moved: {}", failures.len(), images.len(), failures.join("; "));
    }
    Ok(())
}

/// One release: the settings, the commit, and the push engine every app shares.
struct Release<'a> {
    ctx: &'a Context,
    args: &'a flags::Release,
    config: Config,
    /// The settings the apps' input digests are computed with (see `prepare`).
    inputs_config: Config,
    git: Git<'a>,
    revision: String,
    /// Whether the work tree differs from the commit (only with --allow-dirty or --dry-run).
    dirty: bool,
    gate: Option<ScanGate>,
    /// The RustSec side of the gate, when the thresholds are set.
    advisory_gate: Option<AdvisoryGate>,
    /// The key indexes and provenance are signed with (--sign, or the configuration's).
    key: Option<Key>,
    /// Whether every platform image gets its attestations (--attest, or the configuration's).
    attest: bool,
    pusher: Pusher,
}

/// The apps a release takes and why, with their input digests when they were computed.
struct Selection {
    apps: Vec<SelectedApp>,
    /// Whether the apps were detected (not named, not --all).
    detected: bool,
    inputs: Option<BTreeMap<String, AppInputs>>,
}

impl<'a> Release<'a> {
    /// Settings, the commit and its cleanliness, the repository (created with
    /// --create-repository), the scan gate and the push engine: everything that can refuse the
    /// release before it selects anything.
    async fn prepare(ctx: &'a Context, args: &'a flags::Release) -> Result<Release<'a>> {
        let config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms: &args.selection.platform })?;
        // A job of a release split across runners builds some platforms; its images' recorded
        // inputs are those of the index `merge` assembles, with every configured platform.
        let platforms: &[String] = if args.by_digest { &[] } else { &args.selection.platform };
        let inputs_config = ctx.config(Overrides { repository: args.repository.as_deref(), platforms })?;
        let git = ctx.git()?;
        let revision = git.rev_parse("HEAD")?;
        let dirty_paths = git.dirty_paths()?;
        let dirty = !dirty_paths.is_empty();
        if dirty && !args.allow_dirty && !args.dry_run {
            bail!("{}", dirty_tree(&revision, &dirty_paths));
        }
        if args.create_repository && !args.dry_run {
            for target in crate::aws::ecr::targets(&config.repository, &ctx.app_names())? {
                crate::aws::ecr::setup(&target.repository, &config.ecr, &target.apps, target.own, false)
                    .await
                    .context("--create-repository")?;
            }
        }
        let gate = scan_gate(args, &config).await?;
        let advisory_gate = advisory_gate(ctx, args, &config)?;
        let supply_chain = &config.supply_chain;
        // A job of a sharded release (--by-digest) signs the provenance it attaches; `merge`
        // writes and signs the indexes.
        let key = signing_key(args.sign.as_deref(), args.no_sign, supply_chain)?;
        // Read by now: what builds run must not see them.
        let key_variable = args.sign.as_deref().or(supply_chain.sign.as_deref()).and_then(|source| source.strip_prefix("env://"));
        ctx.hide_from_children(&key_variable.into_iter().collect::<Vec<_>>());
        let attest = !args.no_attest && (args.attest || supply_chain.attest);
        let pusher = Pusher::new(&args.transfer, config.repository.host(), Progress::new(args.json || args.by_digest))?;
        Ok(Release { ctx, args, config, inputs_config, git, revision, dirty, gate, advisory_gate, key, attest, pusher })
    }

    /// The named apps, every app, or the changed ones and (unless --git-only) those whose image
    /// of their current inputs the repository lacks.
    async fn select(&self) -> Result<Selection> {
        let (ctx, args) = (self.ctx, self.args);
        let mut apps = evidence::selection(Some(&self.git), &ctx.workspace, &self.config, &args.selection)?;
        let detected = args.selection.apps.is_empty() && !args.selection.all;
        // The input digests cost a `cargo metadata`: computed only for the registry check or a build.
        let mut inputs = None;
        if detected && !args.git_only {
            let current = inputs.insert(evidence::current_inputs(&self.git, &ctx.workspace, &self.inputs_config, &self.revision)?);
            let released = Released {
                registries: self.pusher.registries(),
                repositories: &self.config.repository,
                git: &self.git,
                head: &self.revision,
            };
            heal::add_unreleased(&released, &ctx.workspace, current, &args.selection.exclude, &mut apps).await?;
        }
        // Pushed in this order: an image of docker/ and its tags before the images built on it.
        let names: Vec<String> = apps.iter().map(|app| app.name.clone()).collect();
        let (order, _) = ctx.workspace.build_order(&names);
        apps.sort_by_key(|app| order.iter().position(|name| *name == app.name));
        Ok(Selection { apps, detected, inputs })
    }

    /// The summary before anything is built: each app's tags, and why the others are skipped.
    fn plan(&self, selection: &Selection) -> Result<Summary<'_>> {
        let (workspace, args) = (&self.ctx.workspace, self.args);
        let epoch = self.git.commit_time(&self.revision)?;
        let date: String = crate::image::oci::rfc3339(epoch).chars().take(10).filter(|c| c.is_ascii_digit()).collect();
        let apps: Vec<String> = workspace.apps().map(|member| member.name.clone()).collect();
        let tag_plan = TagPlan {
            revision: &self.revision,
            date: &date,
            extra: &args.tag_extra,
            latest: !args.no_latest,
            apps: &apps,
            repositories: &self.config.repository,
        };
        let skipped = workspace
            .apps()
            .filter(|member| !selection.apps.iter().any(|app| app.name == member.name))
            .map(|member| {
                let why = if args.selection.exclude.contains(&member.name) {
                    "excluded with --exclude"
                } else if !selection.detected {
                    "not named"
                } else if args.git_only {
                    "unchanged in git"
                } else {
                    "unchanged in git, and the repository has its image"
                };
                SkippedApp { name: member.name.clone(), why: why.to_string() }
            })
            .collect();
        let mut summary = Summary {
            repository: self.config.repository.to_string(),
            revision: &self.revision,
            dry_run: args.dry_run,
            apps: Vec::new(),
            skipped,
        };
        for app in &selection.apps {
            let version = workspace.member(&app.name).map(|member| member.version.as_str()).unwrap_or_default();
            let repository = match self.config.repository.per_image() {
                true => Some(self.config.repository.of(&app.name)?.to_string()),
                false => None,
            };
            summary.apps.push(AppSummary {
                name: app.name.clone(),
                repository,
                reasons: app.reasons.clone(),
                platforms: self.config.platforms.iter().map(ToString::to_string).collect(),
                tags: release_tags(&app.name, version, &tag_plan)?,
                digest: None,
                push: None,
                error: None,
                seconds: None,
                scan: None,
                advisories: None,
                attached: None,
            });
        }
        Ok(summary)
    }

    /// One progress line per app, from the build to its tags.
    fn app_lines(&self, selection: &Selection) -> Vec<AppLine> {
        let platforms: Vec<String> = self.config.platforms.iter().map(ToString::to_string).collect();
        let lines: Vec<AppLine> = selection.apps.iter().map(|app| self.pusher.progress().app(&app.name)).collect();
        for line in &lines {
            line.step(&format!("building for {}", platforms.join(", ")));
        }
        lines
    }

    /// Builds the selected apps; an image built from a dirty tree does not record inputs, so a
    /// later release rebuilds it.
    async fn build(&self, selection: &Selection) -> Result<Vec<BuiltImage>> {
        let (ctx, config, revision) = (self.ctx, &self.config, &self.revision);
        let workspace = &ctx.workspace;
        let mut provenance = Provenance::from_git(Some(&self.git), Some(revision))?;
        let mut deferred_inputs: Option<DeferredInputs<'_>> = None;
        if !self.dirty {
            match &selection.inputs {
                Some(inputs) => provenance.record_inputs(inputs.clone()),
                None => {
                    let inputs_config = &self.inputs_config;
                    deferred_inputs = Some(Box::new(move || evidence::current_inputs_in_new_shell(workspace, inputs_config, revision)))
                }
            }
        }
        let builder = Builder {
            ctx,
            config,
            with: BuildWith::of(&self.args.selection),
            registries: self.pusher.registries(),
            progress: self.pusher.progress(),
            attest: self.attest,
            signing_key: self.key.as_ref(),
        };
        builder.build(&selection.apps, provenance, deferred_inputs).await
    }

    /// Pushes each app, gates it on its scans when a gate is set, and moves its tags. One app's
    /// failure does not stop the others: each is pushed and reported on its own. The apps push
    /// side by side (the push engine's budgets bound the requests, and it sends a blob they share
    /// once); an app built on an image of docker/ that this release pushes too moves its tags
    /// once that image's push has ended, so the base and its tags are there first. Returns the
    /// failures, one line per app.
    async fn push_gate_and_tag(&self, images: &[BuiltImage], lines: Vec<AppLine>, summary: &mut Summary<'_>) -> Vec<String> {
        let names: Vec<String> = summary.apps.iter().map(|app| app.name.clone()).collect();
        let ended: Vec<watch::Sender<bool>> = names.iter().map(|_| watch::channel(false).0).collect();
        let pushes = images.iter().zip(&mut summary.apps).zip(lines).zip(&ended).map(|(((image, app), line), this_ended)| {
            let bases: Vec<watch::Receiver<bool>> = self
                .ctx
                .workspace
                .image_bases(&app.name)
                .iter()
                .filter_map(|base| names.iter().position(|name| name == base))
                .map(|at| ended[at].subscribe())
                .collect();
            async move {
                let failure = self.push_gate_and_tag_app(image, app, bases, line).await;
                this_ended.send_replace(true);
                failure
            }
        });
        futures_util::future::join_all(pushes).await.into_iter().flatten().collect()
    }

    /// One app of `push_gate_and_tag`: its failure, if it failed.
    async fn push_gate_and_tag_app(
        &self,
        image: &BuiltImage,
        app: &mut AppSummary,
        bases: Vec<watch::Receiver<bool>>,
        mut line: AppLine,
    ) -> Option<String> {
        app.digest = Some(image.index.digest.clone());
        line.begin_group("push");
        let started = Instant::now();
        let pushed = match self.check_advisories(app) {
            Ok(()) => self.push_app(image, app, bases, &line).await,
            Err(err) => Err(err),
        };
        app.seconds = Some(started.elapsed().as_secs_f64());
        match pushed {
            Ok(report) => {
                line.finish(&format!("released {} as {}", image.index.digest, app.tags.join(", ")));
                app.push = Some(report);
                None
            }
            Err(err) => {
                line.finish("failed, tags not moved");
                let message = format!("{err:#}");
                app.error = Some(message.clone());
                Some(format!("{}: {message}", app.name))
            }
        }
    }

    /// The RustSec side of the gate: the advisories against the crates the app compiles for its
    /// targets, recorded in the summary; an error, before anything is pushed, when they exceed
    /// the thresholds.
    fn check_advisories(&self, app: &mut AppSummary) -> Result<()> {
        let Some(gate) = &self.advisory_gate else { return Ok(()) };
        let mut packages = Vec::new();
        if let Some(package) = self.ctx.workspace.member(&app.name).and_then(|member| member.package.as_ref()) {
            for platform in &self.config.platforms {
                packages.extend(self.ctx.workspace.graph.resolver()?.compiled_into(package, &self.config.targets[platform])?);
            }
        }
        packages.sort();
        packages.dedup();
        let findings = gate.advisories.findings(&packages);
        eprint!("{}", advisories::table(&app.name, &findings));
        let violations = scan::violations(&advisories::counts(&findings), &gate.thresholds);
        let named: Vec<String> = findings.iter().map(|f| format!("{} ({} {} {})", f.id, f.severity, f.package, f.version)).collect();
        app.advisories = Some(findings);
        if !violations.is_empty() {
            bail!(
                "the RustSec advisories against its crates exceed the gate ({}): {}; update those crates to a fixed version (cargo update -p NAME), or raise the thresholds",
                violations.join(", "),
                named.join(", ")
            );
        }
        Ok(())
    }

    /// Pushes each app's platform images by digest, untagged, and says what they are for `merge`.
    async fn push_by_digest(&self, images: &[BuiltImage], lines: Vec<AppLine>) -> Result<by_digest::Pushed> {
        let mut pushed =
            by_digest::Pushed { revision: self.revision.clone(), repository: self.config.repository.to_string(), ..Default::default() };
        for (image, line) in images.iter().zip(lines) {
            let layout = Layout::open(&image.layout)?;
            let index: ImageIndex = serde_json::from_slice(&layout.read_blob(&image.index)?).context("a built index is unreadable")?;
            let repository = self.config.repository.of(&image.app)?;
            for manifest in &index.manifests {
                self.pusher.push(&layout, manifest, &repository, &[], &line).await.with_context(|| format!("cannot push {}", image.app))?;
            }
            // Each platform image's attestations come from the job that built it.
            if !image.attachments.is_empty() {
                referrers::attach(&self.pusher, &layout, &repository, &image.attachments, &line)
                    .await
                    .with_context(|| format!("cannot attach the attestations of {}", image.app))?;
            }
            line.finish(&format!("pushed {} platform images by digest", index.manifests.len()));
            pushed.apps.insert(image.app.clone(), by_digest::PushedApp { annotations: index.annotations, manifests: index.manifests });
        }
        Ok(pushed)
    }

    /// Pushes one app's image untagged, attaches its attestations, gates and signs it, then
    /// moves its tags once `bases` (the pushes of the docker/ images it is built on) have ended.
    async fn push_app(
        &self,
        image: &BuiltImage,
        app: &mut AppSummary,
        bases: Vec<watch::Receiver<bool>>,
        line: &AppLine,
    ) -> Result<PushReport> {
        let (pusher, repository) = (&self.pusher, &self.config.repository.of(&image.app)?);
        let layout = Layout::open(&image.layout)?;
        if self.gate.is_none() && image.attachments.is_empty() && self.key.is_none() && bases.is_empty() {
            return pusher.push(&layout, &image.index, repository, &app.tags, line).await;
        }
        let signature = match &self.key {
            Some(key) => Some(signatures::signature_manifest(&layout, repository, &image.index, key)?),
            None => None,
        };
        // Untagged first: the tags move only once the attestations are attached and the scan of
        // every platform passed. The blobs of the attestations and the signature go up beside
        // the image's (none of them names anything).
        let extras: Vec<Descriptor> = image.attachments.iter().chain(&signature).cloned().collect();
        let (mut report, ()) = tokio::try_join!(
            pusher.push(&layout, &image.index, repository, &[], line),
            pusher.upload_blobs_of(&layout, &extras, repository)
        )?;
        // The attestations go side by side with the scan and the signature; an image the gate
        // refuses is not signed.
        let attaching = async {
            if image.attachments.is_empty() {
                return Ok(None);
            }
            line.step("attaching the bills of materials and provenance");
            referrers::attach(pusher, &layout, repository, &image.attachments, line).await.map(Some)
        };
        let name = app.name.clone();
        let checking_and_signing = async {
            let scan = match &self.gate {
                Some(gate) => Some(gate.check(&name, &platform_manifests(&layout, &image.index)?, line).await?),
                None => None,
            };
            if let Some(signature) = &signature {
                signatures::push_signature(pusher, &layout, repository, &image.index, signature, line).await?;
            }
            anyhow::Ok(scan)
        };
        let (attached, scan) = tokio::try_join!(attaching, checking_and_signing)?;
        app.attached = attached;
        if scan.is_some() {
            app.scan = scan;
        }
        for mut base in bases {
            // Its sender outlives every push, so this only waits.
            let _ = base.wait_for(|ended| *ended).await;
        }
        let tagged = pusher.tag_pushed(&layout, &image.index, repository, &app.tags, line).await?;
        (report.tags_written, report.tags_unchanged) = (tagged.tags_written, tagged.tags_unchanged);
        Ok(report)
    }
}

/// Why a release refuses a dirty work tree, naming the files; a rewritten Cargo.lock gets its
/// usual cause, since `cargo xtask` (an unlocked `cargo run`) updates it after a crate is added.
fn dirty_tree(revision: &str, paths: &[String]) -> String {
    const NAMED: usize = 5;
    let mut named = paths.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > NAMED {
        named.push_str(&format!(" and {} more", paths.len() - NAMED));
    }
    let lockfile = if paths.iter().any(|path| path == "Cargo.lock") {
        " (Cargo.lock changed: cargo updates it when a crate is added or its manifest changes, `cargo xtask` included; commit it)"
    } else {
        ""
    };
    format!("the work tree has uncommitted changes ({named}), so an image tagged with {revision} would not be that commit{lockfile}: commit or stash them, or pass --allow-dirty")
}

/// The key `--sign` names, else the configuration's, unless `--no-sign`.
pub fn signing_key(flag: Option<&str>, no_sign: bool, supply_chain: &config::SupplyChain) -> Result<Option<Key>> {
    Ok(match (flag, &supply_chain.sign) {
        _ if no_sign => None,
        (Some(key), _) => Some(read_key(key, "--sign")?),
        (None, Some(key)) => Some(read_key(key, "`sign` in [workspace.metadata.xtask.supply-chain]")?),
        (None, None) => None,
    })
}

/// The signing key `source` names (`named_by` says where it is named): a PEM file, or
/// `env://VAR` for a PEM in that variable (as cosign spells it). The key's text is never printed.
fn read_key(source: &str, named_by: &str) -> Result<Key> {
    let pem = match source.strip_prefix("env://") {
        // Empty counts as unset: a workflow passes a secret it does not have as "".
        Some(variable) => std::env::var(variable).ok().filter(|pem| !pem.is_empty()).with_context(|| {
            format!("{named_by} names the variable {variable}, which is not set: set it to the PEM key, or release with --no-sign")
        })?,
        None => std::fs::read_to_string(source).with_context(|| format!("cannot read the signing key {source} ({named_by})"))?,
    };
    let password = std::env::var("COSIGN_PASSWORD").ok();
    Key::from_pem(&pem, password.as_deref()).with_context(|| format!("{named_by} {source}"))
}

/// The advisory database --advisory-db (or XTASK_ADVISORY_DB) names, else the configuration's.
fn advisory_db(args: &flags::Release, config: &config::Config) -> Option<std::path::PathBuf> {
    args.advisory_db.clone().or_else(|| config.supply_chain.advisory_db.as_ref().map(std::path::PathBuf::from))
}

/// The RustSec advisories and the thresholds they are held to.
struct AdvisoryGate {
    advisories: advisories::Advisories,
    thresholds: Thresholds,
}

/// The RustSec gate, when the thresholds are set: against the database --advisory-db (or
/// XTASK_ADVISORY_DB) names, or on ECR against cargo-audit's default checkout, fetched when
/// missing (and skipped, with a note, when that fails). A repository elsewhere gets it only with
/// a database named (see `scan_gate`).
fn advisory_gate(ctx: &Context, args: &flags::Release, config: &config::Config) -> Result<Option<AdvisoryGate>> {
    let thresholds =
        Thresholds { max_critical: args.max_critical.or(config.ecr.max_critical), max_high: args.max_high.or(config.ecr.max_high) };
    let on_ecr = on_ecr(&config.repository);
    if args.dry_run || !thresholds.is_set() {
        return Ok(None);
    }
    let advisories = match (advisory_db(args, config), on_ecr) {
        // A database the user named must open.
        (Some(path), _) => advisories::Advisories::open(&ctx.sh, &path)?,
        // The default one adds to ECR's scan: without it (and without the network to fetch it)
        // the release says so and gates on ECR's findings.
        (None, true) => match advisories::default_location().map(|path| advisories::Advisories::open(&ctx.sh, &path)) {
            Some(Ok(advisories)) => advisories,
            Some(Err(err)) => {
                eprintln!("note: the RustSec part of the scan gate is skipped ({err:#})");
                return Ok(None);
            }
            None => return Ok(None),
        },
        (None, false) => return Ok(None),
    };
    Ok(Some(AdvisoryGate { advisories, thresholds }))
}

/// The scan gate, when thresholds are set by flags or configuration and the repository is on
/// ECR. Thresholds given as flags for another repository are an error; configured ones are
/// skipped there (a local layout while developing), with a note.
async fn scan_gate(args: &flags::Release, config: &config::Config) -> Result<Option<ScanGate>> {
    let flags = Thresholds { max_critical: args.max_critical, max_high: args.max_high };
    let configured = Thresholds { max_critical: config.ecr.max_critical, max_high: config.ecr.max_high };
    if args.dry_run || !(flags.is_set() || configured.is_set()) {
        return Ok(None);
    }
    if !on_ecr(&config.repository) {
        if flags.is_set() && advisory_db(args, config).is_none() {
            bail!(
                "--max-critical and --max-high gate on ECR's image scans, and {} is not an ECR repository: release to <account>.dkr.ecr.<region>.amazonaws.com/NAME, name a RustSec advisory database with --advisory-db to gate on the apps' crates alone, or drop the flags",
                config.repository
            );
        }
        if advisory_db(args, config).is_some() {
            eprintln!(
                "note: {} is not on ECR, so its images are not scanned there; the thresholds hold the RustSec findings",
                config.repository
            );
        } else {
            eprintln!(
                "note: the scan gate of [workspace.metadata.xtask.ecr] applies to ECR repositories only, so it is skipped for {}",
                config.repository
            );
        }
        return Ok(None);
    }
    let scanner = crate::aws::ecr::Scanner::new(&config.repository).await?;
    Ok(Some(ScanGate::new(scanner, flags, args.scan_timeout, &config.ecr)))
}

/// Whether the apps' repositories are on ECR (all are on one registry).
fn on_ecr(repositories: &Repositories) -> bool {
    crate::aws::ecr::ecr_repositories(repositories).is_ok()
}

/// Each platform and the digest of its manifest in the app's index.
fn platform_manifests(layout: &Layout, index: &crate::image::oci::Descriptor) -> Result<Vec<(String, Digest)>> {
    let index: crate::image::oci::ImageIndex = serde_json::from_slice(&layout.read_blob(index)?).context("the app's index is not valid")?;
    Ok(index
        .manifests
        .into_iter()
        .map(|manifest| (manifest.platform.as_ref().map(ToString::to_string).unwrap_or_else(|| "unknown".into()), manifest.digest))
        .collect())
}

/// In GitHub Actions: a Markdown table for the job summary, and `digests` (app → digest) and
/// `matrix` (`{"app": [...]}` of the released apps) as step outputs.
fn write_github_outputs(summary: &Summary<'_>) -> Result<()> {
    use std::io::Write as _;
    let append = |variable: &str, text: &str| -> Result<()> {
        let Some(path) = std::env::var_os(variable) else { return Ok(()) };
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot write ${variable}"))?;
        file.write_all(text.as_bytes())?;
        Ok(())
    };
    let mut table = format!(
        "### Release of {}\n\n| app | digest | tags | uploaded | result |\n| --- | --- | --- | --- | --- |\n",
        &summary.revision[..summary.revision.len().min(12)]
    );
    for app in &summary.apps {
        let digest = app.digest.as_ref().map(|d| format!("`{d}`")).unwrap_or_default();
        let uploaded = app
            .push
            .as_ref()
            .map(|p| format!("{} of {} blobs, {} bytes; {} mounted", p.blobs_uploaded, p.blobs, p.bytes_uploaded, p.blobs_mounted))
            .unwrap_or_default();
        let result = if app.error.is_some() { "failed" } else { "released" };
        table.push_str(&format!("| {} | {digest} | {} | {uploaded} | {result} |\n", app.name, app.tags.join("<br>")));
    }
    let findings: Vec<(&str, &advisories::Finding)> =
        summary.apps.iter().flat_map(|app| app.advisories.iter().flatten().map(move |finding| (app.name.as_str(), finding))).collect();
    if !findings.is_empty() {
        table.push_str("\n#### RustSec advisories\n\n| app | advisory | severity | crate | fixed in |\n| --- | --- | --- | --- | --- |\n");
        for (app, finding) in findings {
            let fixed = finding.patched.join(", ");
            table.push_str(&format!(
                "| {app} | {} | {} | {} {} | {fixed} |\n",
                finding.id, finding.severity, finding.package, finding.version
            ));
        }
    }
    append("GITHUB_STEP_SUMMARY", &table)?;
    let digests: std::collections::BTreeMap<&str, String> = summary
        .apps
        .iter()
        .filter(|app| app.error.is_none())
        .filter_map(|app| Some((app.name.as_str(), app.digest.as_ref()?.to_string())))
        .collect();
    let released: Vec<&str> = digests.keys().copied().collect();
    let outputs = format!("digests={}\nmatrix={}\n", serde_json::to_string(&digests)?, serde_json::json!({ "app": released }));
    append("GITHUB_OUTPUT", &outputs)
}

fn print_summary(summary: &Summary<'_>, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else if summary.apps.is_empty() {
        println!("no app changed; nothing to release");
    } else if summary.dry_run {
        for app in &summary.apps {
            let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
            let repository = app.repository.as_deref().unwrap_or(&summary.repository);
            println!("{}: would push to {repository} as {} ({})", app.name, app.tags.join(", "), reasons.join("; "));
        }
    } else {
        print!("{}", summary_table(summary));
    }
    Ok(())
}

/// The final table: one row per app with its platforms, digest, what was uploaded, mounted and
/// skipped, the push time and the tags; failed apps say so (the reason is in the error paragraph).
fn summary_table(summary: &Summary<'_>) -> String {
    let header = ["app", "platforms", "digest", "uploaded", "mounted", "skipped", "time", "tags"].map(String::from);
    let mut rows = vec![header];
    for app in &summary.apps {
        let blobs = |count: usize, bytes: u64| format!("{count} blobs, {}", indicatif::HumanBytes(bytes));
        let (digest, uploaded, mounted, skipped) = match (&app.push, &app.error) {
            (Some(report), None) => (
                // The full digest is in the app's last progress line, the JSON and the step outputs.
                app.digest.as_ref().map(|digest| format!("sha256:{}", &digest.hex()[..12])).unwrap_or_default(),
                blobs(report.blobs_uploaded, report.bytes_uploaded),
                format!("{} blobs", report.blobs_mounted),
                blobs(report.blobs_skipped, report.bytes_skipped),
            ),
            _ => ("failed, tags not moved".to_string(), String::new(), String::new(), String::new()),
        };
        let time = app.seconds.map(|seconds| format!("{seconds:.1} s")).unwrap_or_default();
        rows.push([app.name.clone(), app.platforms.join(","), digest, uploaded, mounted, skipped, time, app.tags.join(", ")]);
    }
    let widths: Vec<usize> = (0..8).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    let mut table = format!("released to {}\n", summary.repository);
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_table_has_a_row_per_app() {
        let released = AppSummary {
            name: "hello-api".into(),
            repository: None,
            reasons: vec![],
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            tags: vec!["hello-api-0123456789abcdef0123456789abcdef01234567".into(), "hello-api-latest".into()],
            digest: Some(Digest::of(b"index")),
            push: Some(PushReport {
                blobs: 5,
                blobs_uploaded: 2,
                blobs_mounted: 1,
                bytes_uploaded: 3 << 20,
                blobs_skipped: 2,
                bytes_skipped: 1500,
                ..PushReport::default()
            }),
            error: None,
            seconds: Some(1.25),
            scan: None,
            advisories: None,
            attached: None,
        };
        let failed = AppSummary {
            name: "worker".into(),
            platforms: vec!["linux/amd64".into()],
            tags: vec!["worker-latest".into()],
            push: None,
            error: Some("registry refused".into()),
            seconds: Some(0.5),
            ..released.clone()
        };
        let summary = Summary {
            repository: "127.0.0.1:5000/acme/prod".into(),
            revision: "0123",
            dry_run: false,
            apps: vec![released, failed],
            skipped: Vec::new(),
        };
        expect_test::expect![[r#"
            released to 127.0.0.1:5000/acme/prod
            app        platforms                digest                  uploaded           mounted  skipped            time   tags
            hello-api  linux/amd64,linux/arm64  sha256:1bc04b5291c2     2 blobs, 3.00 MiB  1 blobs  2 blobs, 1.46 KiB  1.2 s  hello-api-0123456789abcdef0123456789abcdef01234567, hello-api-latest
            worker     linux/amd64              failed, tags not moved                                                 0.5 s  worker-latest
        "#]]
        .assert_eq(&summary_table(&summary));
    }

    #[test]
    fn a_dirty_tree_is_named() {
        let paths = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        expect_test::expect![[r#"the work tree has uncommitted changes (Cargo.lock, crates/api/Cargo.toml), so an image tagged with 0123 would not be that commit (Cargo.lock changed: cargo updates it when a crate is added or its manifest changes, `cargo xtask` included; commit it): commit or stash them, or pass --allow-dirty"#]]
        .assert_eq(&dirty_tree("0123", &paths(&["Cargo.lock", "crates/api/Cargo.toml"])));
        expect_test::expect![[r#"the work tree has uncommitted changes (a, b, c, d, e and 2 more), so an image tagged with 0123 would not be that commit: commit or stash them, or pass --allow-dirty"#]]
        .assert_eq(&dirty_tree("0123", &paths(&["a", "b", "c", "d", "e", "f", "g"])));
    }

    #[test]
    fn sha_tag_first_extras_then_latest() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let extra = ["semver".to_string(), "date".to_string(), "staging".to_string()];
        let apps = ["hello".to_string(), "hello-api".to_string(), "worker".to_string()];
        let shared = Repositories::parse("registry.example/acme/prod").unwrap();
        let plan = TagPlan { revision: sha, date: "20261122", extra: &extra, latest: true, apps: &apps, repositories: &shared };
        expect_test::expect![[r#"
            hello-api-0123456789abcdef0123456789abcdef01234567
            hello-api-v0.3.1
            hello-api-20261122
            hello-api-staging
            hello-api-latest"#]]
        .assert_eq(&release_tags("hello-api", "0.3.1", &plan).unwrap().join("\n"));
        let plan = TagPlan { revision: sha, date: "20261122", extra: &[], latest: false, apps: &apps, repositories: &shared };
        assert_eq!(release_tags("worker", "0.2.0", &plan).unwrap(), [format!("worker-{sha}")]);
        let long = "a".repeat(100);
        let err = release_tags(&long, "1.0.0", &plan).unwrap_err();
        assert!(format!("{err:#}").contains("is not a valid tag"), "{err:#}");
        let bad = ["bad/suffix".to_string()];
        let err = release_tags("worker", "0.2.0", &TagPlan { extra: &bad, ..plan }).unwrap_err();
        assert!(format!("{err:#}").contains("change --tag-extra"), "{err:#}");
        let owned = ["api-latest".to_string()];
        let err = release_tags("hello", "0.1.0", &TagPlan { extra: &owned, ..plan }).unwrap_err();
        expect_test::expect!["--tag-extra gives app `hello` the tag `hello-api-latest`, which belongs to app `hello-api` (its tags start `hello-api-`): choose a rule that does not start with `api`"].assert_eq(&format!("{err:#}"));
        assert!(release_tags("hello-api", "0.1.0", &TagPlan { extra: &owned, ..plan }).is_ok(), "its own prefix is the app's");
        // In a repository of its own, an app's tags are its commit, the rules and latest.
        let own = Repositories::parse("ghcr.io/acme/{image}").unwrap();
        let plan = TagPlan { extra: &extra, latest: true, repositories: &own, ..plan };
        expect_test::expect![[r#"
            0123456789abcdef0123456789abcdef01234567
            v0.3.1
            20261122
            staging
            latest"#]]
        .assert_eq(&release_tags("hello-api", "0.3.1", &plan).unwrap().join("\n"));
        assert!(release_tags("hello", "0.1.0", &TagPlan { extra: &owned, ..plan }).is_ok(), "no other app's tags are there");
    }
}
