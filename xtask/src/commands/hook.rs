//! `cargo xtask hook install|uninstall|run`: a git pre-push hook that builds the apps the pushed
//! commits change, into their local layouts, and stops the push when one does not build. A hook
//! that was there before is kept, runs first, and comes back on uninstall.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::builder::{self, BuildWith};
use crate::context::Context;
use crate::detect::evidence::{detect, resolve_range};
use crate::detect::SelectedApp;
use crate::flags::{self, HookCommand};
use crate::progress::Progress;
use crate::repository::store::Registries;
use crate::workspace::config::Overrides;

/// The first lines of the hook this command writes; what `uninstall` recognises as its own.
const MARKER: &str = "# xtask pre-push hook: written by `cargo xtask hook install`, removed by `cargo xtask hook uninstall`.";

/// The name a hook found at install time is kept under, beside ours, which runs it first.
const PREVIOUS: &str = "pre-push.before-xtask";

fn hook_script() -> String {
    format!(
        r#"#!/bin/sh
{MARKER}
# It builds the apps the pushed commits change and stops the push when one does not build.
input=$(cat)
hooks=$(dirname "$0")
if [ -x "$hooks/{PREVIOUS}" ]; then
  printf '%s\n' "$input" | "$hooks/{PREVIOUS}" "$@" || exit $?
fi
printf '%s\n' "$input" | exec cargo xtask hook run "$@"
"#
    )
}

pub async fn run(ctx: &Context, args: flags::Hook) -> Result<()> {
    match args.command {
        HookCommand::Install => install(&ctx.git()?.hooks_dir()?),
        HookCommand::Uninstall => uninstall(&ctx.git()?.hooks_dir()?),
        HookCommand::Run { .. } => {
            let mut pushed = String::new();
            std::io::stdin().read_to_string(&mut pushed).context("cannot read the refs git is pushing")?;
            build_pushed(ctx, &pushed).await
        }
    }
}

fn install(hooks: &Path) -> Result<()> {
    let hook = hooks.join("pre-push");
    let previous = hooks.join(PREVIOUS);
    std::fs::create_dir_all(hooks).with_context(|| format!("cannot create {}", hooks.display()))?;
    match std::fs::read_to_string(&hook) {
        Ok(text) if text.contains(MARKER) => {}
        Ok(_) if previous.exists() => bail!(
            "{} is not the xtask's hook, and {} is taken too: move one of them away and install again",
            hook.display(),
            previous.display()
        ),
        Ok(_) => std::fs::rename(&hook, &previous).with_context(|| format!("cannot keep the existing hook as {}", previous.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", hook.display())),
    }
    std::fs::write(&hook, hook_script()).with_context(|| format!("cannot write {}", hook.display()))?;
    make_executable(&hook)?;
    let kept = if previous.exists() { format!("; the hook that was there runs first, kept as {PREVIOUS}") } else { String::new() };
    println!("installed the pre-push hook in {}{kept}", hook.display());
    Ok(())
}

fn uninstall(hooks: &Path) -> Result<()> {
    let hook = hooks.join("pre-push");
    let previous = hooks.join(PREVIOUS);
    match std::fs::read_to_string(&hook) {
        Ok(text) if text.contains(MARKER) => std::fs::remove_file(&hook)?,
        Ok(_) => bail!("{} is not the xtask's hook, so it stays: remove it by hand if you want it gone", hook.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "no pre-push hook is installed in {}, so there is nothing to remove (`cargo xtask hook install` writes one)",
            hooks.display()
        ),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", hook.display())),
    }
    if previous.exists() {
        std::fs::rename(&previous, &hook)?;
        println!("removed the xtask's pre-push hook and put back the one it found");
    } else {
        println!("removed the xtask's pre-push hook");
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// One line git gives a pre-push hook: `<local ref> <local sha> <remote ref> <remote sha>`.
#[derive(Debug, PartialEq)]
struct PushedRef {
    /// `None` when the push deletes the remote ref.
    local: Option<String>,
    /// `None` when the remote ref is new.
    remote: Option<String>,
}

fn parse_pushed(text: &str) -> Result<Vec<PushedRef>> {
    let sha = |field: &str| (!field.bytes().all(|byte| byte == b'0')).then(|| field.to_string());
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [_, local, _, remote] => Ok(PushedRef { local: sha(local), remote: sha(remote) }),
            _ => bail!("`{line}` is not a line git gives a pre-push hook (`<local ref> <local sha> <remote ref> <remote sha>`)"),
        })
        .collect()
}

/// Detects the apps each pushed ref changes against what the remote has (a new branch against
/// the default base), and builds them from the work tree.
async fn build_pushed(ctx: &Context, pushed: &str) -> Result<()> {
    let git = ctx.git()?;
    let config = ctx.config(Overrides { repository: None, platforms: &[] })?;
    let mut apps: BTreeMap<String, SelectedApp> = BTreeMap::new();
    let mut heads = Vec::new();
    for PushedRef { local, remote } in parse_pushed(pushed)? {
        let Some(local) = local else { continue };
        // A remote commit this clone lacks is a push git will refuse unless forced: compare
        // with the default base then.
        let base = remote.filter(|remote| git.rev_parse(remote).is_ok());
        if base.as_deref() == Some(local.as_str()) {
            continue;
        }
        let range = resolve_range(&git, base.as_deref(), Some(&local))?;
        for app in detect(&git, &ctx.workspace, &config, &range, false)?.apps {
            apps.entry(app.name.clone()).or_insert(app);
        }
        heads.push(local);
    }
    if apps.is_empty() {
        eprintln!("pre-push: no app changed, nothing to build");
        return Ok(());
    }
    let names: Vec<String> = apps.keys().cloned().collect();
    let head = git.rev_parse("HEAD")?;
    let tree = if heads.iter().all(|pushed| *pushed == head) && !git.is_dirty()? {
        ""
    } else {
        " (from the work tree, which is not exactly what is pushed)"
    };
    eprintln!("pre-push: building {}{tree}", names.join(", "));
    let apps: Vec<SelectedApp> = apps.into_values().collect();
    let registries = Registries::new(None, config.repository.host())?;
    builder::build_work_tree(
        ctx,
        &config,
        Some(&git),
        &apps,
        BuildWith { builder: flags::Builder::Auto, engine_builder: None },
        &registries,
        &Progress::new(false),
    )
    .await
    .with_context(|| {
        format!("the push was stopped: {} did not build; fix it and push again (`git push --no-verify` skips this check)", names.join(", "))
    })?;
    eprintln!("pre-push: {} built", names.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: expect_test::Expect) {
        let parsed = parse_pushed(input).map(|refs| format!("{refs:?}")).unwrap_or_else(|err| format!("error: {err}"));
        expected.assert_eq(&parsed);
    }

    #[test]
    fn pushed_refs() {
        let zero = "0".repeat(40);
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        check(
            &format!("refs/heads/main {a} refs/heads/main {b}\n"),
            expect_test::expect![[
                r#"[PushedRef { local: Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), remote: Some("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb") }]"#
            ]],
        );
        check(
            &format!("refs/heads/topic {a} refs/heads/topic {zero}\n"),
            expect_test::expect![[r#"[PushedRef { local: Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), remote: None }]"#]],
        );
        check(
            &format!("(delete) {zero} refs/heads/old {b}\n\n"),
            expect_test::expect![[r#"[PushedRef { local: None, remote: Some("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb") }]"#]],
        );
        check("\n", expect_test::expect!["[]"]);
        check("refs/heads/main abc", expect_test::expect!["error: `refs/heads/main abc` is not a line git gives a pre-push hook (`<local ref> <local sha> <remote ref> <remote sha>`)"]);
    }
}
