//! Amazon ECR, the production registry: everything that calls AWS. `ecr` holds the hosts,
//! authorization tokens, `ecr setup` as a pure plan with thin SDK calls, deletion by digest and
//! the IAM action list; `scan` is the release's scan gate over ECR's image scans.

pub mod ecr;
pub mod scan;
