//! What the end-to-end tests stand on, and no test of its own: scratch workspaces and the real
//! programs started on loopback (`harness`), a proxy that plays a faulty or hostile registry
//! (`proxy`), a registry that lies (`hostile`: foreign `Location` and `Link`, endless bodies,
//! loops), and a Bearer token server (`token`).

pub mod harness;
pub mod hostile;
pub mod proxy;
pub mod token;
