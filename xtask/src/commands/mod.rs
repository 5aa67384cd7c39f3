//! One module per command: each turns its parsed flags and the shared `Context` into calls of
//! the layers below (detection, builds, the repository side, AWS) and prints the outcome. They
//! are leaves: no other module imports a command.

pub mod adopt;
pub mod assemble;
pub mod build;
pub mod changed;
pub mod ecr;
pub mod hook;
pub mod images;
pub mod merge;
pub mod promote;
pub mod prune;
pub mod push;
pub mod release;
pub mod rollback;
pub mod verify;
