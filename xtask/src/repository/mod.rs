//! The repository side: where images go and come from. `registry` is the only HTTP client of
//! registries (distribution protocol, auth, retries); `store` gives one interface over a
//! registry repository and a local layout; `push` is the push engine; `read` resolves base
//! images; `images` lists each app's images; `delete` removes images by digest; `by_digest` joins
//! platform images pushed by separate jobs into indexes; `referrers` attaches artifacts (bills
//! of materials, provenance) to images; `signatures` signs indexes as cosign does and verifies
//! them.

pub mod by_digest;
pub mod delete;
pub mod images;
pub mod push;
pub mod read;
pub mod referrers;
pub mod registry;
pub mod signatures;
pub mod store;
