//! End-to-end tests: they drive the xtask binary as a user would, in scratch copies of this
//! workspace, against real servers started on loopback (the CNCF distribution registry, skopeo
//! as an independent client, and a Docker engine where one runs).

mod changed;
mod ecr;
mod engine;
mod errors;
mod harness;
mod proxy;
mod push;
mod release;
mod resilience;
mod token;
