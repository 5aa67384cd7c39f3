//! The README documents what the binary does: every command and flag its `--help` lists, and
//! the IAM policy `cargo xtask ecr policy` prints. (Here rather than in the xtask's unit tests,
//! which must read nothing outside the crate: a workspace that adopts the xtask has its own
//! README.)

use std::process::Command;

use crate::support::harness::{run, stdout};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

fn help(args: &[&str]) -> String {
    let output = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).arg("--help"));
    assert!(output.status.success(), "xtask {args:?} --help failed");
    stdout(&output)
}

/// The commands of a `--help` text: the first word of each line of its `Commands:` section.
fn commands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .into_iter()
        .flat_map(|section| section.split("\n\n").next().unwrap_or_default().lines())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_names_every_command_and_flag() {
    let readme = readme();
    let mut missing = Vec::new();
    for command in commands(&help(&[])) {
        let name = format!("cargo xtask {command}");
        if !readme.contains(&name) {
            missing.push(name.clone());
        }
        // Each option line starts with its flags (`-h, --help`, `--repository <R>`).
        let flags: Vec<String> = help(&[&command])
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace().map(|word| word.trim_end_matches(','));
                let first = words.next()?;
                let long = if first.starts_with("--") { first } else { words.next().filter(|_| first.starts_with('-'))? };
                long.starts_with("--").then(|| long.split(['=', '[', '<']).next().unwrap().to_string())
            })
            .filter(|flag| flag != "--help" && flag != "--version")
            .collect();
        for flag in flags {
            if !readme.contains(&flag) {
                missing.push(format!("{name} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "README.md does not mention: {missing:?}");
}

/// The README holds the policy `cargo xtask ecr policy` prints, so it cannot drift.
#[test]
fn readme_holds_the_generated_iam_policy() {
    let output = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args([
        "ecr",
        "policy",
        "--repository",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/prod",
    ]));
    assert!(output.status.success());
    let policy =
        stdout(&output).replace("arn:aws:ecr:us-east-1:123456789012:repository/acme/prod", "arn:aws:ecr:REGION:ACCOUNT:repository/NAME");
    assert!(readme().contains(policy.trim_end()), "README.md must contain the output of `cargo xtask ecr policy`:\n{policy}");
}
