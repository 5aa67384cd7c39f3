//! ECR end to end: moto's server is the control plane (reached through AWS_ENDPOINT_URL), and a
//! distribution registry whose htpasswd holds moto's token password stands in for the ECR data
//! plane, reached through the explicit host mapping XTASK_REGISTRY_MAP.

use crate::harness::{skopeo, stderr, stdout, Moto, Registry, Scratch};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// moto's GetAuthorizationToken answers `AWS:<account>-auth-token`.
const MOTO_PASSWORD: &str = "123456789012-auth-token";

struct Ecr {
    moto: Moto,
    registry: Registry,
}

impl Ecr {
    fn start() -> Ecr {
        Ecr { moto: Moto::start(), registry: Registry::start_with_auth("AWS", MOTO_PASSWORD) }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.moto.env();
        env.push(("XTASK_REGISTRY_MAP", format!("{ECR_HOST}={}", self.registry.host)));
        env
    }

    fn xtask(&self, scratch: &Scratch, args: &[&str]) -> std::process::Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
        scratch.xtask_with_env(args, &env)
    }

    fn xtask_ok(&self, scratch: &Scratch, args: &[&str]) -> String {
        let output = self.xtask(scratch, args);
        assert!(output.status.success(), "cargo xtask {args:?} failed:\n{}\n{}", stdout(&output), stderr(&output));
        stdout(&output)
    }
}

#[test]
fn setup_is_idempotent_and_a_release_authenticates_with_the_ecr_token() {
    let ecr = Ecr::start();
    let scratch = Scratch::new();
    let repository = format!("{ECR_HOST}/acme/prod");

    let planned = ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository, "--dry-run"]);
    assert!(planned.contains("would create the repository: scan on push true, tags IMMUTABLE_WITH_EXCLUSION except *-latest"), "{planned}");
    assert!(
        ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository, "--dry-run"]).contains("would create"),
        "a dry run changes nothing"
    );
    let done = ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository]);
    assert!(done.contains("did create the repository") && done.contains("did write the lifecycle policy (3 rules)"), "{done}");
    assert_eq!(ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository]).trim(), format!("{repository}: up to date"));

    // The settings change: only the difference is applied.
    scratch.edit("Cargo.toml", |manifest| format!("{manifest}\n[workspace.metadata.xtask.ecr]\nscan-on-push = false\nkeep-images = 5\n"));
    let changed = ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository, "--dry-run"]);
    assert_eq!(
        changed.trim(),
        format!("{repository}: would set scan on push to false\n{repository}: would write the lifecycle policy (3 rules)")
    );

    // The whole path: the SDK's token, decoded to AWS:<password>, accepted by the registry.
    ecr.xtask_ok(&scratch, &["release", "worker", "--allow-dirty", "--repository", &repository, "--create-repository"]);
    let read = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("AWS:{MOTO_PASSWORD}"),
        "--raw",
        &format!("docker://{}/acme/prod:worker-latest", ecr.registry.host),
    ]);
    assert!(read.status.success(), "{}", stderr(&read));

    // A credential the user configured for the host wins over the token.
    scratch.login(ECR_HOST, "AWS", "not-the-token");
    let refused = ecr.xtask(&scratch, &["release", "worker", "--allow-dirty", "--repository", &repository]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}

#[test]
fn missing_aws_credentials_and_non_ecr_repositories_are_explained() {
    let ecr = Ecr::start();
    let scratch = Scratch::new();
    let repository = format!("{ECR_HOST}/acme/prod");
    let env: Vec<(&str, String)> =
        ecr.env().into_iter().filter(|(key, _)| !key.starts_with("AWS_ACCESS_KEY_ID") && !key.starts_with("AWS_SECRET")).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let output = scratch.xtask_with_env(&["release", "worker", "--repository", &repository], &env);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no AWS credentials were found"), "{}", stderr(&output));

    let output = ecr.xtask(&scratch, &["ecr", "setup", "--repository", &format!("{}/acme/prod", ecr.registry.host)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not an ECR registry"), "{}", stderr(&output));

    let policy: serde_json::Value = serde_json::from_str(&ecr.xtask_ok(&scratch, &["ecr", "policy", "--repository", &repository])).unwrap();
    assert_eq!(policy["Statement"][1]["Resource"], "arn:aws:ecr:us-east-1:123456789012:repository/acme/prod");
}
