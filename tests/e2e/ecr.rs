//! ECR end to end: moto's server is the control plane (reached through AWS_ENDPOINT_URL), and a
//! distribution registry whose htpasswd holds moto's token password stands in for the ECR data
//! plane, reached through the explicit host mapping XTASK_REGISTRY_MAP.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::support::harness::{moto_call, moto_put_image, skopeo, stderr, stdout, Moto, Registry, Scratch};
use crate::support::proxy::{Fault, FaultProxy};

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
    assert!(done.contains("did create the repository") && done.contains("did write the lifecycle policy (4 rules)"), "{done}");
    assert_eq!(ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository]).trim(), format!("{repository}: up to date"));

    // The settings change: only the difference is applied.
    scratch.edit("Cargo.toml", |manifest| format!("{manifest}\n[workspace.metadata.xtask.ecr]\nscan-on-push = false\nkeep-images = 5\n"));
    let changed = ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &repository, "--dry-run"]);
    assert_eq!(
        changed.trim(),
        format!("{repository}: would set scan on push to false\n{repository}: would write the lifecycle policy (4 rules)")
    );

    // Without --repository, the environments' repositories on ECR are set up too.
    scratch.edit("Cargo.toml", |manifest| {
        format!(
            "{manifest}\n[workspace.metadata.xtask.environments]\nstaging = \"{ECR_HOST}/acme/staging\"\nproduction = \"{repository}\"\n"
        )
    });
    let environments = ecr.xtask_ok(&scratch, &["ecr", "setup", "--dry-run"]);
    assert!(environments.contains(&format!("{repository}: would set scan on push to false")), "{environments}");
    assert!(environments.contains(&format!("{ECR_HOST}/acme/staging: would create the repository")), "{environments}");

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

    // A repository per image: each app's own is created, with a lifecycle rule for all its tags.
    let per_image = format!("{ECR_HOST}/apps/{{image}}");
    let made = ecr.xtask_ok(&scratch, &["ecr", "setup", "--repository", &per_image]);
    for app in ["worker", "hello-api"] {
        assert!(made.contains(&format!("{ECR_HOST}/apps/{app}: did create the repository")), "{made}");
    }
    assert!(made.contains("did write the lifecycle policy (2 rules)"), "{made}");
    ecr.xtask_ok(&scratch, &["release", "worker", "--allow-dirty", "--no-attest", "--platform", "linux/amd64", "--repository", &per_image]);
    let own = format!("docker://{}/apps/worker:latest", ecr.registry.host);
    let read = skopeo(&["inspect", "--tls-verify=false", "--creds", &format!("AWS:{MOTO_PASSWORD}"), "--raw", &own]);
    assert!(read.status.success(), "{}", stderr(&read));
    let policy: serde_json::Value = serde_json::from_str(&ecr.xtask_ok(&scratch, &["ecr", "policy", "--repository", &per_image])).unwrap();
    assert_eq!(policy["Statement"][1]["Resource"], "arn:aws:ecr:us-east-1:123456789012:repository/apps/*");

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

/// moto's control plane does not see what the distribution registry stores, as ECR's would. A
/// proxy in front of the registry registers every manifest stored with moto (`PutImage`) after
/// each request, so DescribeImageScanFindings and StartImageScan find the pushed images.
fn bridge(ecr: &Ecr) -> FaultProxy {
    let storage = ecr.registry.storage();
    let moto_url = ecr.moto.url.clone();
    let registered = Arc::new(Mutex::new(BTreeSet::new()));
    FaultProxy::start_checked(
        &ecr.registry.host,
        vec![Fault::Pass],
        Arc::new(move || {
            for (digest, manifest) in storage.manifests("acme/prod") {
                if registered.lock().unwrap().insert(digest.clone()) {
                    moto_put_image(&moto_url, "acme/prod", &digest, &manifest);
                }
            }
            Vec::new()
        }),
    )
}

#[test]
fn the_scan_gate_tags_an_image_only_when_its_findings_are_within_the_thresholds() {
    let ecr = Ecr::start();
    let proxy = bridge(&ecr);
    let scratch = Scratch::new();
    // moto cannot apply tag exclusion filters to an untagged PutImage, so this repository keeps
    // mutable tags.
    scratch.edit("Cargo.toml", |manifest| {
        format!("{manifest}\n[workspace.metadata.xtask.ecr]\ntag-mutability = \"MUTABLE\"\nexclusions = []\n")
    });
    scratch.commit("mutable tags");
    let repository = format!("{ECR_HOST}/acme/prod");
    let mut env = ecr.env();
    env.retain(|(key, _)| *key != "XTASK_REGISTRY_MAP");
    env.push(("XTASK_REGISTRY_MAP", format!("{ECR_HOST}={}", proxy.host)));
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let release = |extra: &[&str]| {
        let mut args =
            vec!["release", "worker", "--repository", &repository, "--create-repository", "--platform", "linux/amd64", "--no-attest"];
        args.extend(extra);
        scratch.xtask_with_env(&args, &env)
    };

    // moto's scan finds one HIGH vulnerability (CVE-9999-9999 in moto_fake 9.9.9) in any image.
    let refused = release(&["--max-critical", "0", "--max-high", "0"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{message}");
    assert!(message.contains("worker linux/amd64 (") && message.contains("): 1 HIGH"), "{message}");
    assert!(message.contains("\n  HIGH          CVE-9999-9999  moto_fake 9.9.9\n"), "{message}");
    assert!(
        message.contains("worker: the scan gate refused the image, so its tags were not moved: linux/amd64 has 1 HIGH finding, more than the 0 that max-high allows"),
        "{message}"
    );
    let storage = ecr.registry.storage();
    assert!(storage.tags("acme/prod").is_empty(), "no tag names the refused image: {:?}", storage.tags("acme/prod"));
    assert!(!storage.manifests("acme/prod").is_empty(), "the image itself was pushed, untagged");

    // Within the thresholds (here from the configuration), the same image is tagged; its scan
    // is read again, not started twice.
    scratch.edit("Cargo.toml", |manifest| format!("{manifest}max-critical = 0\nmax-high = 1\n"));
    scratch.commit("allow one high finding");
    let released = release(&["--json"]);
    assert!(released.status.success(), "{}", stderr(&released));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&released)).unwrap();
    let scan = &summary["apps"][0]["scan"][0];
    assert_eq!(scan["platform"], "linux/amd64");
    assert_eq!(scan["outcome"]["scanned"]["counts"]["HIGH"], 1);
    let head = scratch.head();
    let tags: Vec<String> = storage.tags("acme/prod").into_iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [format!("worker-{head}"), "worker-latest".to_string()]);

    // On ECR an image is deleted with BatchDeleteImage: moto no longer knows the index.
    let index = storage.tags("acme/prod").into_iter().find(|(tag, _)| tag == "worker-latest").unwrap().1;
    let known = |digest: &str| {
        moto_call(
            &ecr.moto.url,
            "DescribeImages",
            &serde_json::json!({"repositoryName": "acme/prod", "imageIds": [{"imageDigest": digest}]}),
        )
        .0
    };
    assert!(known(&index));
    let tag = format!("worker-{head}");
    let deleted = scratch.xtask_with_env(&["delete", "worker", "--tag", &tag, "--tag", "worker-latest", "--repository", &repository], &env);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(stdout(&deleted).contains(&format!("deleted {index}")), "{}", stdout(&deleted));
    assert!(!known(&index), "BatchDeleteImage deleted the index in ECR");

    // Flags for a repository that is not on ECR are refused before anything is built.
    let output = scratch.xtask(&["release", "worker", "--max-high", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not an ECR repository"), "{}", stderr(&output));
}
