//! `cargo xtask ecr setup` and `cargo xtask ecr policy`: shape the ECR repositories of the
//! configuration (the pure plan and its SDK calls live in `aws::ecr`), and print the IAM policy
//! the commands need.

use anyhow::{Context as _, Result};

use crate::aws::ecr::{ecr_repositories, ecr_repository, iam_policy, setup, targets, Target};
use crate::context::Context;
use crate::flags;
use crate::image::reference::Repositories;
use crate::workspace::config::{Config, Overrides};

/// The repositories `ecr setup` shapes: those --repository names; else the configured ones and
/// every environment's on ECR (staging, production), each once. The configured repositories
/// must be on ECR unless an environment's are.
fn setup_targets(config: &Config, apps: &[String], named: bool) -> Result<Vec<Target>> {
    let mut layouts = vec![config.repository.clone()];
    if !named {
        for (name, repository) in &config.environments {
            let layout = Repositories::parse(repository)
                .with_context(|| format!("environment `{name}` in [workspace.metadata.xtask.environments]"))?;
            if !layouts.contains(&layout) {
                layouts.push(layout);
            }
        }
    }
    let mut shaped: Vec<Target> = Vec::new();
    for layout in &layouts {
        for target in targets(layout, apps)? {
            if ecr_repository(&target.repository).is_ok() && !shaped.contains(&target) {
                shaped.push(target);
            }
        }
    }
    if shaped.is_empty() {
        // Says why the configured repository is not one.
        ecr_repositories(&config.repository)?;
    }
    Ok(shaped)
}

pub async fn run(ctx: &Context, args: flags::Ecr) -> Result<()> {
    match args.command {
        flags::EcrCommand::Setup(setup_args) => {
            let config = ctx.config(Overrides { repository: setup_args.repository.as_deref(), platforms: &[] })?;
            let apps = ctx.app_names();
            let verb = if setup_args.dry_run { "would" } else { "did" };
            for Target { repository, apps, own } in setup_targets(&config, &apps, setup_args.repository.is_some())? {
                let changes = setup(&repository, &config.ecr, &apps, own, setup_args.dry_run).await?;
                if changes.is_empty() {
                    println!("{repository}: up to date");
                }
                for change in &changes {
                    println!("{repository}: {verb} {change}");
                }
            }
        }
        flags::EcrCommand::Policy(policy_args) => {
            let config = ctx.config(Overrides { repository: policy_args.repository.as_deref(), platforms: &[] })?;
            // A repository per image: every name the template makes.
            let arn = match ecr_repositories(&config.repository) {
                Ok((host, names)) => format!("arn:aws:ecr:{}:{}:repository/{names}", host.region, host.account),
                Err(_) => "arn:aws:ecr:REGION:ACCOUNT:repository/NAME".to_string(),
            };
            println!("{}", serde_json::to_string_pretty(&iam_policy(&arn))?);
        }
    }
    Ok(())
}
