//! What the end-to-end tests stand on, and no test of its own: scratch workspaces and the real
//! programs started on loopback (`harness`), a proxy that plays a faulty or hostile registry
//! (`proxy`), a registry that lies (`hostile`: foreign `Location` and `Link`, endless bodies,
//! loops), a registry with the OCI 1.1 referrers API that distribution 2.8 lacks
//! (`referrers_api`), a Bearer token server (`token`), and the Docker engines to build with (`docker`).

pub mod docker;
pub mod harness;
pub mod hostile;
pub mod proxy;
pub mod referrers_api;
pub mod token;
