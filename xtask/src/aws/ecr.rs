//! AWS ECR: its registry hosts, registry credentials from `GetAuthorizationToken`, and the
//! repository as code (`cargo xtask ecr setup`). The only module that calls AWS APIs; credentials
//! come from aws-config's default chain (environment, profiles, SSO, web identity, ECS, IMDS), and
//! the region from the registry host, so the two can never disagree.

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, ImageTagMutabilityExclusionFilter,
    ImageTagMutabilityExclusionFilterType,
};
use base64::Engine as _;

use crate::image::reference::{Repositories, Repository, IMAGE_PLACEHOLDER};
use crate::workspace::config::EcrSettings;

/// An ECR registry host: `<account>.dkr.ecr.<region>.amazonaws.com`, the China partition's
/// `.amazonaws.com.cn`, and the FIPS hosts (`dkr-ecr-fips` or `dkr.ecr-fips`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    pub account: String,
    pub region: String,
}

/// Only a host that is exactly an ECR host (on the default port) is one: credentials minted for
/// an account go nowhere else.
pub fn parse_host(host: &str) -> Option<EcrHost> {
    crate::image::reference::validate_host(host).ok()?;
    let name = host.strip_suffix(":443").unwrap_or(host);
    let rest = name.strip_suffix(".amazonaws.com").or_else(|| name.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once('.')?;
    let region = ["dkr.ecr.", "dkr-ecr-fips.", "dkr.ecr-fips."].iter().find_map(|prefix| rest.strip_prefix(prefix))?;
    let valid_region = !region.is_empty() && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && valid_region)
        .then(|| EcrHost { account: account.to_string(), region: region.to_string() })
}

/// What to say when the configured region is not the registry host's: the host's wins, since
/// a repository lives in one region only, but a user who set another one should know.
fn region_note(host_region: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let (variable, configured) =
        ["AWS_REGION", "AWS_DEFAULT_REGION"].into_iter().find_map(|variable| Some((variable, env(variable).filter(|v| !v.is_empty())?)))?;
    (configured != host_region).then(|| {
        format!("note: the repository is in {host_region} (its host says so), so ECR is called there and not in {variable}={configured}")
    })
}

/// An ECR client for `region` with the default credential chain. `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT_URL_ECR`) redirects it, as for every AWS SDK.
pub async fn client(region: &str) -> aws_sdk_ecr::Client {
    static NOTED: std::sync::Once = std::sync::Once::new();
    if let Some(note) = region_note(region, &|key| std::env::var(key).ok()) {
        NOTED.call_once(|| eprintln!("{note}"));
    }
    let config =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region.to_string())).load().await;
    aws_sdk_ecr::Client::new(&config)
}

/// Registry credentials from `GetAuthorizationToken` (`AWS` and a password valid for hours).
pub struct Token {
    pub user: String,
    pub password: String,
    /// When to fetch a new one: ahead of the token's expiry, and never in the past, because a
    /// token server may report an expiry already gone (moto does) and refetching on every
    /// request would loop.
    pub refresh_at: SystemTime,
}

/// How long before its expiry a token is replaced, so that a long push never presents an
/// expired one; and the least time a token is used.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);
const MINIMUM_USE: Duration = Duration::from_secs(60);

pub async fn authorization_token(host: &EcrHost) -> Result<Token> {
    let output = client(&host.region)
        .await
        .get_authorization_token()
        .send()
        .await
        .map_err(|err| explain(err, "ecr:GetAuthorizationToken", &format!("get a registry token for {}", host.account)))?;
    let data = output.authorization_data().first().context("GetAuthorizationToken returned no authorization data")?;
    let encoded = data.authorization_token().context("GetAuthorizationToken returned no token")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).context("the ECR token is not base64")?;
    let decoded = String::from_utf8(decoded).context("the ECR token is not text")?;
    let (user, password) = decoded.split_once(':').context("the ECR token is not `user:password`")?;
    let now = SystemTime::now();
    let expires = data.expires_at().map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at.secs().max(0) as u64));
    let refresh_at =
        expires.and_then(|at| at.checked_sub(REFRESH_MARGIN)).filter(|at| *at > now + MINIMUM_USE).unwrap_or(now + MINIMUM_USE);
    Ok(Token { user: user.to_string(), password: password.to_string(), refresh_at })
}

/// One paragraph for a failed AWS call: what failed, and the fix for the usual causes (no
/// credentials, an expired session, a missing IAM permission, a missing repository, throttling).
fn explain<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    err: SdkError<E>,
    action: &str,
    what: &str,
) -> anyhow::Error {
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().unwrap_or_default().to_string();
    let detail = aws_sdk_ecr::error::DisplayErrorContext(&err).to_string();
    let fix = match code.as_str() {
        "AccessDeniedException" | "AccessDenied" => {
            format!("the AWS identity may not call {action}: grant it (`cargo xtask ecr policy` prints the policy this tool needs)")
        }
        "ExpiredTokenException" | "ExpiredToken" | "RequestExpired" => {
            "the AWS session has expired: renew it (`aws sso login`, or re-run the OIDC role step in CI)".to_string()
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "InvalidClientTokenId" | "SignatureDoesNotMatch" => {
            "AWS rejected the access key: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile in use".to_string()
        }
        "RepositoryNotFoundException" => "the repository does not exist: create it with `cargo xtask ecr setup`".to_string(),
        "ThrottlingException" | "TooManyRequestsException" => "AWS kept throttling the call after retries: try again in a minute".to_string(),
        _ if detail.contains("no credentials") || detail.contains("credentials provider") || detail.contains("CredentialsNotLoaded") => {
            "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or in GitHub Actions AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE (aws-actions/configure-aws-credentials does that)".to_string()
        }
        _ => format!("check the AWS credentials and region ({detail})"),
    };
    if code.is_empty() {
        anyhow!("cannot {what}: {fix}")
    } else {
        anyhow!("cannot {what}: AWS answered {code} ({message}); {fix}")
    }
}

/// Where an image's scan stands, as `DescribeImageScanFindings` tells it.
#[derive(Debug)]
pub enum ScanState {
    /// The repository does not know the digest yet.
    ImageUnknown,
    /// No scan of the image exists yet.
    NotStarted,
    InProgress,
    Complete(ScanFindings),
    /// ECR cannot scan the image, with its reason (a static binary on `scratch` has no
    /// operating-system packages for basic scanning to read).
    Unsupported(String),
    /// The scan failed or its findings are unavailable, with ECR's status and reason.
    Failed(String),
}

/// A finished scan: the count per severity (CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL,
/// UNDEFINED) and the first page of findings.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ScanFindings {
    pub counts: std::collections::BTreeMap<String, u32>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub severity: String,
    pub name: String,
    /// `name version` of the vulnerable package, when ECR names one.
    pub package: String,
}

/// Reads and starts image scans in the ECR repositories of the apps (one shared, or one each;
/// on one registry).
pub struct Scanner {
    client: aws_sdk_ecr::Client,
    account: String,
    repositories: Repositories,
}

impl Scanner {
    /// For the apps' repositories, which must be on ECR.
    pub async fn new(repositories: &Repositories) -> Result<Scanner> {
        let (host, _) = ecr_repositories(repositories)?;
        Ok(Scanner { client: client(&host.region).await, account: host.account, repositories: repositories.clone() })
    }

    /// The ECR repository name of `app`'s images.
    fn name(&self, app: &str) -> Result<String> {
        Ok(ecr_repository(&self.repositories.of(app)?)?.1)
    }

    fn image(digest: &crate::image::oci::Digest) -> aws_sdk_ecr::types::ImageIdentifier {
        aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(digest.as_str()).build()
    }

    pub async fn state(&self, app: &str, digest: &crate::image::oci::Digest) -> Result<ScanState> {
        use aws_sdk_ecr::types::ScanStatus;
        let name = self.name(app)?;
        let described = self
            .client
            .describe_image_scan_findings()
            .registry_id(&self.account)
            .repository_name(&name)
            .image_id(Scanner::image(digest))
            .send()
            .await;
        let output = match described {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_scan_not_found_exception()) => return Ok(ScanState::NotStarted),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_image_not_found_exception()) => return Ok(ScanState::ImageUnknown),
            Err(err) => {
                return Err(explain(err, "ecr:DescribeImageScanFindings", &format!("read the scan findings of {digest} in {name}")))
            }
        };
        let status = output.image_scan_status();
        let description = status.and_then(|s| s.description()).unwrap_or_default().to_string();
        Ok(match status.and_then(|s| s.status()) {
            Some(ScanStatus::Complete | ScanStatus::Active) => {
                ScanState::Complete(output.image_scan_findings().map(scan_findings).unwrap_or_default())
            }
            None | Some(ScanStatus::InProgress | ScanStatus::Pending) => ScanState::InProgress,
            Some(ScanStatus::UnsupportedImage) => ScanState::Unsupported(description),
            Some(other) => ScanState::Failed(format!("{} ({description})", other.as_str())),
        })
    }

    /// Starts a basic scan. One that already ran today (`LimitExceededException`: the scan on
    /// push got there first) is as good.
    pub async fn start(&self, app: &str, digest: &crate::image::oci::Digest) -> Result<()> {
        let name = self.name(app)?;
        let started =
            self.client.start_image_scan().registry_id(&self.account).repository_name(&name).image_id(Scanner::image(digest)).send().await;
        match started {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_limit_exceeded_exception()) => Ok(()),
            Err(err) => Err(explain(err, "ecr:StartImageScan", &format!("start a scan of {digest} in {name}"))),
        }
    }
}

fn scan_findings(found: &aws_sdk_ecr::types::ImageScanFindings) -> ScanFindings {
    let counts = found
        .finding_severity_counts()
        .map(|counts| counts.iter().map(|(severity, count)| (severity.as_str().to_string(), (*count).max(0) as u32)).collect())
        .unwrap_or_default();
    let basic = found.findings().iter().map(|finding| {
        let attribute = |key: &str| finding.attributes().iter().find(|a| a.key() == key).and_then(|a| a.value()).unwrap_or_default();
        Finding {
            severity: finding.severity().map(|s| s.as_str().to_string()).unwrap_or_default(),
            name: finding.name().unwrap_or_default().to_string(),
            package: format!("{} {}", attribute("package_name"), attribute("package_version")).trim().to_string(),
        }
    });
    let enhanced = found.enhanced_findings().iter().map(|finding| {
        let package = finding
            .package_vulnerability_details()
            .and_then(|details| details.vulnerable_packages().first())
            .map(|package| format!("{} {}", package.name().unwrap_or_default(), package.version().unwrap_or_default()).trim().to_string())
            .unwrap_or_default();
        Finding {
            severity: finding.severity().unwrap_or_default().to_string(),
            name: finding.title().unwrap_or_default().to_string(),
            package,
        }
    });
    ScanFindings { counts, findings: basic.chain(enhanced).collect() }
}

/// Deletes the images `digests` (and every tag naming them) with `BatchDeleteImage`, ECR's way of
/// deleting, one call per hundred images (its limit) on one client; an image already gone
/// counts as deleted.
pub async fn delete_images(repository: &Repository, digests: &[crate::image::oci::Digest]) -> Result<()> {
    let (host, name) = ecr_repository(repository)?;
    let client = client(&host.region).await;
    for batch in digests.chunks(100) {
        let images = batch.iter().map(|digest| aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(digest.as_str()).build());
        let output = client
            .batch_delete_image()
            .registry_id(&host.account)
            .repository_name(&name)
            .set_image_ids(Some(images.collect()))
            .send()
            .await
            .map_err(|err| explain(err, "ecr:BatchDeleteImage", &format!("delete images from {name}")))?;
        for failure in output.failures() {
            let code = failure.failure_code().map(|code| code.as_str()).unwrap_or_default();
            if code != "ImageNotFound" {
                let digest = failure.image_id().and_then(|id| id.image_digest()).unwrap_or_default();
                bail!("ECR did not delete image {digest} from {name}: {code} ({})", failure.failure_reason().unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// Every AWS action a command needs, from which `cargo xtask ecr policy` builds the IAM policy,
/// so that the documented policy cannot drift from the code. The data-plane actions are what a
/// push and a pull through the registry API are authorised as.
pub const ACTIONS: &[(&str, &[&str])] = &[
    (
        "release",
        &[
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
            // The scan gate.
            "ecr:DescribeImageScanFindings",
            "ecr:StartImageScan",
        ],
    ),
    ("rollback", &["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:PutImage"]),
    // The images are found through the registry API, then deleted with BatchDeleteImage.
    ("prune", &["ecr:GetAuthorizationToken", "ecr:ListImages", "ecr:BatchGetImage", "ecr:BatchDeleteImage"]),
    ("delete", &["ecr:GetAuthorizationToken", "ecr:ListImages", "ecr:BatchGetImage", "ecr:BatchDeleteImage"]),
    // The tag list of the registry API is authorised as ListImages.
    ("images", &["ecr:GetAuthorizationToken", "ecr:ListImages", "ecr:BatchGetImage"]),
    // On both repositories: reads from the source, a push to the destination.
    (
        "promote",
        &[
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
        ],
    ),
    (
        "ecr setup",
        &[
            "ecr:DescribeRepositories",
            "ecr:CreateRepository",
            "ecr:PutImageScanningConfiguration",
            "ecr:PutImageTagMutability",
            "ecr:GetLifecyclePolicy",
            "ecr:PutLifecyclePolicy",
        ],
    ),
];

/// The least-privilege IAM policy for `ACTIONS`: the token on every resource (it is not scoped
/// to repositories), everything else on the one repository.
pub fn iam_policy(repository_arn: &str) -> serde_json::Value {
    let mut scoped: Vec<&str> =
        ACTIONS.iter().flat_map(|(_, actions)| actions.iter().copied()).filter(|a| *a != "ecr:GetAuthorizationToken").collect();
    scoped.sort();
    scoped.dedup();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RegistryToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {"Sid": "SharedRepository", "Effect": "Allow", "Action": scoped, "Resource": repository_arn},
        ]
    })
}

/// The lifecycle policy `setup` writes: untagged images expire after the configured days, and
/// each app keeps its newest `keep-images` images (its `<app>-` tags) in the shared repository.
pub fn lifecycle_policy(apps: &[String], settings: &EcrSettings, own_repository: bool) -> serde_json::Value {
    let mut rules = vec![serde_json::json!({
        "rulePriority": 1,
        "description": format!("expire untagged images after {} days", settings.expire_untagged_days),
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": settings.expire_untagged_days},
        "action": {"type": "expire"},
    })];
    for (priority, app) in (2..).zip(apps) {
        // In an app's own repository every tag is the app's.
        let tags = match own_repository {
            true => serde_json::json!({"tagPatternList": ["*"]}),
            false => serde_json::json!({"tagPrefixList": [format!("{app}-")]}),
        };
        let mut selection =
            serde_json::json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": settings.keep_images});
        selection.as_object_mut().expect("an object").extend(tags.as_object().expect("an object").clone());
        rules.push(serde_json::json!({
            "rulePriority": priority,
            "description": format!("keep the newest {} images of {app}", settings.keep_images),
            "selection": selection,
            "action": {"type": "expire"},
        }));
    }
    serde_json::json!({ "rules": rules })
}

/// What the repository looks like (or should).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryState {
    pub scan_on_push: bool,
    pub tag_mutability: String,
    pub exclusions: Vec<String>,
    pub encryption: String,
    pub kms_key: Option<String>,
    pub lifecycle_policy: Option<serde_json::Value>,
}

/// One step of `setup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(RepositoryState),
    ScanOnPush(bool),
    TagMutability { mode: String, exclusions: Vec<String> },
    LifecyclePolicy(serde_json::Value),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create(state) => write!(
                f,
                "create the repository: scan on push {}, tags {}{}, encryption {}{}",
                state.scan_on_push,
                state.tag_mutability,
                if state.exclusions.is_empty() { String::new() } else { format!(" except {}", state.exclusions.join(", ")) },
                state.encryption,
                state.kms_key.as_ref().map(|key| format!(" with {key}")).unwrap_or_default()
            ),
            Change::ScanOnPush(on) => write!(f, "set scan on push to {on}"),
            Change::TagMutability { mode, exclusions } if exclusions.is_empty() => write!(f, "set tag mutability to {mode}"),
            Change::TagMutability { mode, exclusions } => write!(f, "set tag mutability to {mode} except {}", exclusions.join(", ")),
            Change::LifecyclePolicy(policy) => {
                let rules = policy["rules"].as_array().map(Vec::len).unwrap_or(0);
                write!(f, "write the lifecycle policy ({rules} rules)")
            }
        }
    }
}

/// The changes that make `current` (or nothing, when the repository does not exist) match
/// `desired`. Encryption cannot change after creation, so a difference there is an error.
pub fn plan(desired: &RepositoryState, current: Option<&RepositoryState>) -> Result<Vec<Change>> {
    let Some(current) = current else {
        let mut changes = vec![Change::Create(RepositoryState { lifecycle_policy: None, ..desired.clone() })];
        changes.extend(desired.lifecycle_policy.clone().map(Change::LifecyclePolicy));
        return Ok(changes);
    };
    if (current.encryption.as_str(), current.kms_key.as_deref()) != (desired.encryption.as_str(), desired.kms_key.as_deref()) {
        bail!(
            "the repository is encrypted with {} and the configuration asks for {}; ECR cannot change a repository's encryption: create a new repository or set encryption = \"{}\" in [workspace.metadata.xtask.ecr]",
            current.encryption,
            desired.encryption,
            current.encryption
        );
    }
    let mut changes = Vec::new();
    if current.scan_on_push != desired.scan_on_push {
        changes.push(Change::ScanOnPush(desired.scan_on_push));
    }
    if (current.tag_mutability.as_str(), &current.exclusions) != (desired.tag_mutability.as_str(), &desired.exclusions) {
        changes.push(Change::TagMutability { mode: desired.tag_mutability.clone(), exclusions: desired.exclusions.clone() });
    }
    if current.lifecycle_policy != desired.lifecycle_policy {
        changes.extend(desired.lifecycle_policy.clone().map(Change::LifecyclePolicy));
    }
    Ok(changes)
}

/// The repository state the configuration asks for.
pub fn desired_state(settings: &EcrSettings, apps: &[String], own_repository: bool) -> Result<RepositoryState> {
    ImageTagMutability::try_parse(&settings.tag_mutability).map_err(|_| {
        anyhow!(
            "tag-mutability = \"{}\" in [workspace.metadata.xtask.ecr] is not one of MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION",
            settings.tag_mutability
        )
    })?;
    let with_exclusions = settings.tag_mutability.ends_with("_WITH_EXCLUSION");
    if with_exclusions && settings.exclusions.is_empty() {
        bail!(
            "tag-mutability = \"{}\" needs `exclusions` (for instance [\"*-latest\"]) in [workspace.metadata.xtask.ecr]",
            settings.tag_mutability
        );
    }
    let encryption = settings.encryption.to_ascii_uppercase();
    match (encryption.as_str(), &settings.kms_key) {
        ("AES256", None) | ("KMS", _) => {}
        ("AES256", Some(_)) => bail!("kms-key is set but encryption is AES256 in [workspace.metadata.xtask.ecr]: set encryption = \"KMS\""),
        _ => bail!("encryption = \"{}\" in [workspace.metadata.xtask.ecr] is not AES256 or KMS", settings.encryption),
    }
    Ok(RepositoryState {
        scan_on_push: settings.scan_on_push,
        tag_mutability: settings.tag_mutability.clone(),
        exclusions: if with_exclusions { settings.exclusions.clone() } else { Vec::new() },
        encryption,
        kms_key: settings.kms_key.clone(),
        lifecycle_policy: Some(lifecycle_policy(apps, settings, own_repository)),
    })
}

/// The ECR host and repository name of `repository`, or an error naming the fix.
pub fn ecr_repository(repository: &Repository) -> Result<(EcrHost, String)> {
    match repository {
        Repository::Registry { host, path } => on_ecr(host, path.clone()),
        Repository::Layout { .. } => Err(a_local_layout(repository)),
    }
}

/// The ECR host of the apps' repositories and the names they make (`acme/*` for one per image,
/// `*` standing for any image's name), or an error naming the fix.
pub fn ecr_repositories(repositories: &Repositories) -> Result<(EcrHost, String)> {
    match repositories {
        Repositories::Shared(repository) => ecr_repository(repository),
        Repositories::PerImage(text) => match (repositories.host(), text.split_once('/')) {
            (Some(host), Some((_, path))) => on_ecr(host, path.replace(IMAGE_PLACEHOLDER, "*")),
            _ => Err(a_local_layout(repositories)),
        },
    }
}

fn on_ecr(host: &str, name: String) -> Result<(EcrHost, String)> {
    match parse_host(host) {
        Some(ecr) => Ok((ecr, name)),
        None => {
            bail!("{host} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com): `ecr` commands manage ECR repositories only")
        }
    }
}

fn a_local_layout(repository: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!("the repository is the local layout {repository}: pass --repository <account>.dkr.ecr.<region>.amazonaws.com/NAME or set `repository` in [workspace.metadata.xtask]")
}

/// Reads the repository's current state, or `None` when it does not exist.
async fn current_state(client: &aws_sdk_ecr::Client, name: &str) -> Result<Option<RepositoryState>> {
    let described = match client.describe_repositories().repository_names(name).send().await {
        Ok(output) => output,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()) => return Ok(None),
        Err(err) => return Err(explain(err, "ecr:DescribeRepositories", &format!("read repository {name}"))),
    };
    let repository = described.repositories().first().with_context(|| format!("DescribeRepositories returned nothing for {name}"))?;
    let policy = match client.get_lifecycle_policy().repository_name(name).send().await {
        Ok(output) => {
            output.lifecycle_policy_text().map(serde_json::from_str).transpose().context("the repository's lifecycle policy is not JSON")?
        }
        Err(err) if err.as_service_error().is_some_and(|e| e.is_lifecycle_policy_not_found_exception()) => None,
        Err(err) => return Err(explain(err, "ecr:GetLifecyclePolicy", &format!("read the lifecycle policy of {name}"))),
    };
    let encryption = repository.encryption_configuration();
    Ok(Some(RepositoryState {
        scan_on_push: repository.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
        tag_mutability: repository.image_tag_mutability().map(|m| m.as_str().to_string()).unwrap_or_else(|| "MUTABLE".into()),
        exclusions: repository.image_tag_mutability_exclusion_filters().iter().map(|f| f.filter().to_string()).collect(),
        encryption: encryption.map(|e| e.encryption_type().as_str().to_string()).unwrap_or_else(|| "AES256".into()),
        kms_key: encryption.and_then(|e| e.kms_key().map(str::to_string)),
        lifecycle_policy: policy,
    }))
}

fn exclusion_filters(exclusions: &[String]) -> Result<Vec<ImageTagMutabilityExclusionFilter>> {
    exclusions
        .iter()
        .map(|filter| {
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter(filter)
                .build()
                .context("invalid exclusion filter")
        })
        .collect()
}

async fn apply(client: &aws_sdk_ecr::Client, name: &str, change: &Change) -> Result<()> {
    match change {
        Change::Create(state) => {
            let mut encryption = EncryptionConfiguration::builder().encryption_type(EncryptionType::from(state.encryption.as_str()));
            if let Some(key) = &state.kms_key {
                encryption = encryption.kms_key(key);
            }
            client
                .create_repository()
                .repository_name(name)
                .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(state.scan_on_push).build())
                .image_tag_mutability(ImageTagMutability::from(state.tag_mutability.as_str()))
                .set_image_tag_mutability_exclusion_filters(Some(exclusion_filters(&state.exclusions)?).filter(|f| !f.is_empty()))
                .encryption_configuration(encryption.build().context("invalid encryption configuration")?)
                .send()
                .await
                .map_err(|err| explain(err, "ecr:CreateRepository", &format!("create repository {name}")))?;
        }
        Change::ScanOnPush(on) => {
            client
                .put_image_scanning_configuration()
                .repository_name(name)
                .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(*on).build())
                .send()
                .await
                .map_err(|err| explain(err, "ecr:PutImageScanningConfiguration", &format!("set scan on push of {name}")))?;
        }
        Change::TagMutability { mode, exclusions } => {
            client
                .put_image_tag_mutability()
                .repository_name(name)
                .image_tag_mutability(ImageTagMutability::from(mode.as_str()))
                .set_image_tag_mutability_exclusion_filters(Some(exclusion_filters(exclusions)?).filter(|f| !f.is_empty()))
                .send()
                .await
                .map_err(|err| explain(err, "ecr:PutImageTagMutability", &format!("set the tag mutability of {name}")))?;
        }
        Change::LifecyclePolicy(policy) => {
            client
                .put_lifecycle_policy()
                .repository_name(name)
                .lifecycle_policy_text(policy.to_string())
                .send()
                .await
                .map_err(|err| explain(err, "ecr:PutLifecyclePolicy", &format!("write the lifecycle policy of {name}")))?;
        }
    }
    Ok(())
}

/// Creates or updates the repository to match the configuration; with `dry_run` only prints
/// what it would change. Returns the changes.
/// One ECR repository to shape, for the apps whose images it holds: all of them in a shared
/// repository, one in its own.
#[derive(PartialEq)]
pub struct Target {
    pub repository: Repository,
    pub apps: Vec<String>,
    pub own: bool,
}

/// The repositories `layout` makes for `apps`: the shared one, or each app's own.
pub fn targets(layout: &Repositories, apps: &[String]) -> Result<Vec<Target>> {
    match layout {
        Repositories::Shared(repository) => Ok(vec![Target { repository: repository.clone(), apps: apps.to_vec(), own: false }]),
        Repositories::PerImage(_) => {
            apps.iter().map(|app| Ok(Target { repository: layout.of(app)?, apps: vec![app.clone()], own: true })).collect()
        }
    }
}

/// Shapes `repository` for `apps`' images: their shared repository, or (`own_repository`) the
/// one app's own.
pub async fn setup(
    repository: &Repository,
    settings: &EcrSettings,
    apps: &[String],
    own_repository: bool,
    dry_run: bool,
) -> Result<Vec<Change>> {
    let (host, name) = ecr_repository(repository)?;
    let desired = desired_state(settings, apps, own_repository)?;
    let client = client(&host.region).await;
    let current = current_state(&client, &name).await?;
    let changes = plan(&desired, current.as_ref()).with_context(|| format!("cannot set {repository} up"))?;
    for change in &changes {
        if !dry_run {
            apply(&client, &name, change).await?;
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts() {
        let check = |host: &str, expected: Option<(&str, &str)>| {
            assert_eq!(
                parse_host(host),
                expected.map(|(account, region)| EcrHost { account: account.into(), region: region.into() }),
                "{host}"
            );
        };
        check("123456789012.dkr.ecr.us-east-1.amazonaws.com", Some(("123456789012", "us-east-1")));
        check("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", Some(("123456789012", "cn-north-1")));
        check("123456789012.dkr-ecr-fips.us-gov-west-1.amazonaws.com", Some(("123456789012", "us-gov-west-1")));
        check("123456789012.dkr.ecr-fips.us-east-2.amazonaws.com", Some(("123456789012", "us-east-2")));
        check("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", Some(("123456789012", "us-east-1")));
        check("12345.dkr.ecr.us-east-1.amazonaws.com", None);
        check("123456789012.dkr.ecr.us-east-1.amazonaws.com:x@evil", None);
        check("123456789012.dkr.ecr.us-east-1.amazonaws.com:5000", None);
        check("evil.example/123456789012.dkr.ecr.us-east-1.amazonaws.com", None);
        check("public.ecr.aws", None);
        check("ghcr.io", None);
        check("123456789012.dkr.ecr..amazonaws.com", None);
    }

    #[test]
    fn a_configured_region_other_than_the_hosts_is_noted() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string())
        };
        assert_eq!(region_note("us-east-1", &env(&[("AWS_REGION", "us-east-1")])), None);
        assert_eq!(region_note("us-east-1", &env(&[])), None);
        assert_eq!(
            region_note("us-east-1", &env(&[("AWS_DEFAULT_REGION", "eu-west-1")])).as_deref(),
            Some("note: the repository is in us-east-1 (its host says so), so ECR is called there and not in AWS_DEFAULT_REGION=eu-west-1")
        );
    }

    fn state(policy: Option<serde_json::Value>) -> RepositoryState {
        desired_state(&EcrSettings::default(), &["hello-api".into()], false)
            .map(|state| RepositoryState { lifecycle_policy: policy, ..state })
            .unwrap()
    }

    #[test]
    fn setup_plans_only_what_differs() {
        let settings = EcrSettings::default();
        let desired = desired_state(&settings, &["hello-api".into(), "worker".into()], false).unwrap();
        let describe = |changes: Vec<Change>| changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        expect_test::expect![[r#"
            create the repository: scan on push true, tags IMMUTABLE_WITH_EXCLUSION except *-latest, encryption AES256
            write the lifecycle policy (3 rules)"#]]
        .assert_eq(&describe(plan(&desired, None).unwrap()));
        assert_eq!(plan(&desired, Some(&desired)).unwrap(), vec![]);
        let old = RepositoryState { scan_on_push: false, tag_mutability: "MUTABLE".into(), exclusions: vec![], ..state(None) };
        expect_test::expect![[r#"
            set scan on push to true
            set tag mutability to IMMUTABLE_WITH_EXCLUSION except *-latest
            write the lifecycle policy (3 rules)"#]]
        .assert_eq(&describe(plan(&desired, Some(&old)).unwrap()));
        let kms = RepositoryState { encryption: "KMS".into(), kms_key: Some("arn:aws:kms:key".into()), ..desired.clone() };
        let err = plan(&desired, Some(&kms)).unwrap_err();
        assert!(err.to_string().contains("ECR cannot change a repository's encryption"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        let check = |settings: EcrSettings, expected: &str| {
            let err = desired_state(&settings, &[], false).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        };
        check(EcrSettings { tag_mutability: "FROZEN".into(), ..EcrSettings::default() }, "is not one of MUTABLE");
        check(EcrSettings { exclusions: vec![], ..EcrSettings::default() }, "needs `exclusions`");
        check(EcrSettings { encryption: "DES".into(), ..EcrSettings::default() }, "is not AES256 or KMS");
        check(EcrSettings { kms_key: Some("k".into()), ..EcrSettings::default() }, "set encryption = \"KMS\"");
    }

    #[test]
    fn lifecycle_policy_keeps_images_per_app() {
        let settings = EcrSettings { keep_images: 10, expire_untagged_days: 3, ..EcrSettings::default() };
        expect_test::expect![[r#"
            {
              "rules": [
                {
                  "action": {
                    "type": "expire"
                  },
                  "description": "expire untagged images after 3 days",
                  "rulePriority": 1,
                  "selection": {
                    "countNumber": 3,
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "tagStatus": "untagged"
                  }
                },
                {
                  "action": {
                    "type": "expire"
                  },
                  "description": "keep the newest 10 images of worker",
                  "rulePriority": 2,
                  "selection": {
                    "countNumber": 10,
                    "countType": "imageCountMoreThan",
                    "tagPrefixList": [
                      "worker-"
                    ],
                    "tagStatus": "tagged"
                  }
                }
              ]
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&lifecycle_policy(&["worker".into()], &settings, false)).unwrap());
        // In the app's own repository, every tag is its.
        let own = lifecycle_policy(&["worker".into()], &settings, true);
        expect_test::expect![[r#"{"countNumber":10,"countType":"imageCountMoreThan","tagPatternList":["*"],"tagStatus":"tagged"}"#]]
            .assert_eq(&own["rules"][1]["selection"].to_string());
    }
}
