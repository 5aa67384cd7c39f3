//! End-to-end tests: they drive the xtask binary as a user would, in scratch copies of this
//! workspace, against real servers started on loopback (the CNCF distribution registry, skopeo
//! as an independent client, and a Docker engine where one runs). `support/` holds what they
//! stand on; every other module is a group of tests.

mod adopt;
mod attacks;
mod changed;
mod corpus;
mod cross;
mod docs;
mod ecr;
mod engine;
mod errors;
mod fidelity;
mod graph;
mod inputs;
mod laptop;
mod layouts;
mod push;
mod release;
mod resilience;
mod runners;
mod supply;
mod support;
