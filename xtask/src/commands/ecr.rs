//! `cargo xtask ecr setup` and `cargo xtask ecr policy`: shape the ECR repositories of the
//! configuration (the pure plan and its SDK calls live in `aws::ecr`), and print the IAM policy
//! the commands need.

use anyhow::{Context as _, Result};

use crate::aws::ecr::{ecr_repository, iam_policy, setup};
use crate::context::Context;
use crate::flags;
use crate::image::reference::Repository;
use crate::workspace::config::{Config, Overrides};

/// The repositories `ecr setup` shapes: the one named with --repository; else the configured
/// repository and every environment's repository on ECR (staging, production), each once. The
/// configured repository must be on ECR unless an environment's is.
fn setup_targets(config: &Config, named: bool) -> Result<Vec<Repository>> {
    let mut targets = vec![config.repository.clone()];
    if !named {
        for (name, repository) in &config.environments {
            let repository = Repository::parse(repository)
                .with_context(|| format!("environment `{name}` in [workspace.metadata.xtask.environments]"))?;
            if ecr_repository(&repository).is_ok() && !targets.contains(&repository) {
                targets.push(repository);
            }
        }
    }
    match targets.iter().filter(|repository| ecr_repository(repository).is_ok()).count() {
        0 => ecr_repository(&config.repository).map(|_| Vec::new()),
        _ => Ok(targets.into_iter().filter(|repository| ecr_repository(repository).is_ok()).collect()),
    }
}

pub async fn run(ctx: &Context, args: flags::Ecr) -> Result<()> {
    match args.command {
        flags::EcrCommand::Setup(setup_args) => {
            let config = ctx.config(Overrides { repository: setup_args.repository.as_deref(), platforms: &[] })?;
            let apps = ctx.app_names();
            let verb = if setup_args.dry_run { "would" } else { "did" };
            for repository in setup_targets(&config, setup_args.repository.is_some())? {
                let changes = setup(&repository, &config.ecr, &apps, setup_args.dry_run).await?;
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
            let arn = match ecr_repository(&config.repository) {
                Ok((host, name)) => format!("arn:aws:ecr:{}:{}:repository/{name}", host.region, host.account),
                Err(_) => "arn:aws:ecr:REGION:ACCOUNT:repository/NAME".to_string(),
            };
            println!("{}", serde_json::to_string_pretty(&iam_policy(&arn))?);
        }
    }
    Ok(())
}
