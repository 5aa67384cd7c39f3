//! `cargo xtask release`: selects apps (named, --all, or changed), builds their multi-arch
//! images and pushes each index to the one repository as `<app>-<sha>`, then `<app>-latest`.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::Shell;

use crate::build::{self, Provenance};
use crate::changed;
use crate::config;
use crate::flags;
use crate::git::Git;
use crate::heal;
use crate::layout::Layout;
use crate::oci::Digest;
use crate::progress::Progress;
use crate::push::{PushReport, Session};
use crate::reference::validate_tag;
use crate::workspace::Workspace;

#[derive(Serialize)]
struct Summary<'a> {
    repository: String,
    revision: &'a str,
    dry_run: bool,
    apps: Vec<AppSummary>,
}

#[derive(Serialize)]
struct AppSummary {
    name: String,
    reasons: Vec<changed::Reason>,
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<PushReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What a release tags an app with, besides the commit.
pub struct TagPlan<'a> {
    pub revision: &'a str,
    /// The commit's date as `YYYYMMDD`, for `date` tags.
    pub date: &'a str,
    pub extra: &'a [String],
    pub latest: bool,
}

/// The tags an app's index gets, in the order they are written: the immutable sha tag first,
/// then the extra tags, and `-latest` last, so that it never names an image that lacks the others.
pub fn release_tags(app: &str, version: &str, plan: &TagPlan<'_>) -> Result<Vec<String>> {
    let mut tags = vec![format!("{app}-{}", plan.revision)];
    for rule in plan.extra {
        tags.push(match rule.as_str() {
            "semver" => format!("{app}-v{version}"),
            "date" => format!("{app}-{}", plan.date),
            suffix => format!("{app}-{suffix}"),
        });
    }
    if plan.latest {
        tags.push(format!("{app}-latest"));
    }
    for tag in &tags {
        validate_tag(tag).with_context(|| format!("app `{app}` gets an invalid tag; rename the package or change --tag-extra"))?;
    }
    tags.dedup();
    Ok(tags)
}

pub async fn run(args: flags::Release) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    let overrides = config::Overrides { repository: args.repository.as_deref(), platforms: &args.selection.platform };
    let config = config::resolve(&workspace.metadata, &|key| std::env::var(key).ok(), overrides)?.rooted_at(&workspace.root);
    let git = Git::open(&sh, &workspace.root)?;
    let revision = git.rev_parse("HEAD")?;
    let dirty = git.is_dirty()?;
    if dirty && !args.allow_dirty && !args.dry_run {
        bail!("the work tree has uncommitted changes, so an image tagged with {revision} would not be that commit: commit or stash them, or pass --allow-dirty");
    }

    let session = Session::new(&args.transfer, Progress::new(args.json))?;
    let mut apps = changed::selection(&sh, Some(&git), &workspace, &config, &args.selection)?;
    let inputs = heal::current_inputs(&sh, &git, &workspace, &config, &revision)?;
    let detected = args.selection.apps.is_empty() && !args.selection.all;
    if detected && !args.git_only {
        heal::add_unreleased(&git, &session, &config.repository, &revision, &workspace, &inputs, &args.selection.exclude, &mut apps)
            .await?;
    }

    let epoch = git.commit_time(&revision)?;
    let date: String = crate::oci::rfc3339(epoch).chars().take(10).filter(|c| c.is_ascii_digit()).collect();
    let tag_plan = TagPlan { revision: &revision, date: &date, extra: &args.tag_extra, latest: !args.no_latest };
    let mut summary = Summary { repository: config.repository.to_string(), revision: &revision, dry_run: args.dry_run, apps: Vec::new() };
    for app in &apps {
        let version = workspace.member(&app.name).map(|member| member.version.as_str()).unwrap_or_default();
        summary.apps.push(AppSummary {
            name: app.name.clone(),
            reasons: app.reasons.clone(),
            tags: release_tags(&app.name, version, &tag_plan)?,
            digest: None,
            push: None,
            error: None,
        });
    }
    if apps.is_empty() || args.dry_run {
        print_summary(&summary, args.json)?;
        return Ok(());
    }

    let mut provenance = Provenance::from_git(Some(&git), Some(&revision))?;
    // An image built from a dirty tree does not record inputs, so a later release rebuilds it.
    if !dirty {
        provenance.inputs = inputs.into_iter().map(|(app, inputs)| (app, inputs.digest)).collect();
    }
    let images = build::build_apps(&sh, &workspace, &config, &apps, &provenance, &session).await?;
    let mut failures = Vec::new();
    for (image, app) in images.iter().zip(&mut summary.apps) {
        app.digest = Some(image.index.digest.clone());
        // One app's failure must not stop the others: each is pushed and reported on its own.
        let pushed = async {
            let layout = Layout::open(&image.layout)?;
            session.push(&layout, &image.index, &config.repository, &app.tags).await
        };
        match pushed.await {
            Ok(report) => app.push = Some(report),
            Err(err) => {
                let message = format!("{err:#}");
                failures.push(format!("{}: {message}", app.name));
                app.error = Some(message);
            }
        }
    }
    print_summary(&summary, args.json)?;
    write_github_outputs(&summary)?;
    if !failures.is_empty() {
        bail!("{} of {} apps failed to release, and their tags were not moved: {}", failures.len(), apps.len(), failures.join("; "));
    }
    Ok(())
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
        let uploaded =
            app.push.as_ref().map(|p| format!("{} of {} blobs, {} bytes", p.blobs_uploaded, p.blobs, p.bytes_uploaded)).unwrap_or_default();
        let result = if app.error.is_some() { "failed" } else { "released" };
        table.push_str(&format!("| {} | {digest} | {} | {uploaded} | {result} |\n", app.name, app.tags.join("<br>")));
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
        return Ok(());
    }
    if summary.apps.is_empty() {
        println!("no app changed; nothing to release");
        return Ok(());
    }
    let verb = if summary.dry_run { "would push" } else { "pushed" };
    for app in &summary.apps {
        let reasons: Vec<String> = app.reasons.iter().map(ToString::to_string).collect();
        match (&app.push, &app.error) {
            // The reason is in the error paragraph that follows the summary.
            (_, Some(_)) => println!("{}: failed, tags not moved", app.name),
            (Some(report), None) => println!(
                "{}: {verb} {} to {} as {} ({} of {} blobs uploaded, {} bytes)",
                app.name,
                app.digest.as_ref().map(ToString::to_string).unwrap_or_default(),
                summary.repository,
                app.tags.join(", "),
                report.blobs_uploaded,
                report.blobs,
                report.bytes_uploaded
            ),
            (None, None) => println!("{}: {verb} to {} as {} ({})", app.name, summary.repository, app.tags.join(", "), reasons.join("; ")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_tag_first_extras_then_latest() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let extra = ["semver".to_string(), "date".to_string(), "staging".to_string()];
        let plan = TagPlan { revision: sha, date: "20261122", extra: &extra, latest: true };
        expect_test::expect![[r#"
            hello-api-0123456789abcdef0123456789abcdef01234567
            hello-api-v0.3.1
            hello-api-20261122
            hello-api-staging
            hello-api-latest"#]]
        .assert_eq(&release_tags("hello-api", "0.3.1", &plan).unwrap().join("\n"));
        let plan = TagPlan { revision: sha, date: "20261122", extra: &[], latest: false };
        assert_eq!(release_tags("worker", "0.2.0", &plan).unwrap(), [format!("worker-{sha}")]);
        let long = "a".repeat(100);
        let err = release_tags(&long, "1.0.0", &plan).unwrap_err();
        assert!(format!("{err:#}").contains("is not a valid tag"), "{err:#}");
        let bad = ["bad/suffix".to_string()];
        let err = release_tags("worker", "0.2.0", &TagPlan { extra: &bad, ..plan }).unwrap_err();
        assert!(format!("{err:#}").contains("change --tag-extra"), "{err:#}");
    }
}
