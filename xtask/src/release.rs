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
use crate::layout::Layout;
use crate::oci::Digest;
use crate::progress::Progress;
use crate::push::{PushReport, Session};
use crate::reference::{validate_tag, Repository};
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

/// The tags an app's index gets, in the order they are written: the immutable sha tag first,
/// so that `-latest` never names an image that has no sha tag.
pub fn release_tags(app: &str, revision: &str) -> Result<Vec<String>> {
    let tags = vec![format!("{app}-{revision}"), format!("{app}-latest")];
    for tag in &tags {
        validate_tag(tag).with_context(|| format!("app `{app}` makes an invalid tag; rename the package"))?;
    }
    Ok(tags)
}

pub async fn run(args: flags::Release) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Workspace::load(&sh, &std::env::current_dir()?)?;
    sh.change_dir(&workspace.root);
    let overrides = config::Overrides { repository: args.repository.as_deref(), platforms: &args.selection.platform };
    let mut config = config::resolve(&workspace.metadata, &|key| std::env::var(key).ok(), overrides)?;
    // A relative layout is relative to the workspace root, wherever the command runs.
    if let Repository::Layout { dir } = &config.repository {
        config.repository = Repository::Layout { dir: workspace.root.join(dir) };
    }
    let git = Git::open(&sh, &workspace.root)?;
    let revision = git.rev_parse("HEAD")?;
    if !args.allow_dirty && !args.dry_run && git.is_dirty()? {
        bail!("the work tree has uncommitted changes, so an image tagged with {revision} would not be that commit: commit or stash them, or pass --allow-dirty");
    }

    let apps = changed::selection(&sh, Some(&git), &workspace, &args.selection)?;

    let mut summary = Summary { repository: config.repository.to_string(), revision: &revision, dry_run: args.dry_run, apps: Vec::new() };
    for app in &apps {
        summary.apps.push(AppSummary {
            name: app.name.clone(),
            reasons: app.reasons.clone(),
            tags: release_tags(&app.name, &revision)?,
            digest: None,
            push: None,
            error: None,
        });
    }
    if apps.is_empty() || args.dry_run {
        print_summary(&summary, args.json)?;
        return Ok(());
    }

    let provenance = Provenance::from_git(Some(&git), Some(&revision))?;
    let session = Session::new(&args.transfer, Progress::new(args.json))?;
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
    if !failures.is_empty() {
        bail!("{} of {} apps failed to release, and their tags were not moved: {}", failures.len(), apps.len(), failures.join("; "));
    }
    Ok(())
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
    fn sha_tag_comes_before_latest() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(release_tags("hello-api", sha).unwrap(), [format!("hello-api-{sha}"), "hello-api-latest".to_string()]);
        let long = "a".repeat(100);
        let err = release_tags(&long, sha).unwrap_err();
        assert!(format!("{err:#}").contains("is not a valid tag"), "{err:#}");
    }
}
