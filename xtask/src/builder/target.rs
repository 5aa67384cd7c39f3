//! Which Rust target, and which glibc version, one app's binary for one platform is built for:
//! its platform's configured target (static musl by default, which runs on any base), or, for an
//! app whose image starts from a glibc base, the gnu counterpart linked against that base's
//! glibc, so that the binary never needs a newer glibc than the image has.

use std::fmt;

use crate::image::libc::{GlibcVersion, Libc};
use crate::workspace::config::LibcPolicy;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CompileTarget {
    pub triple: String,
    /// For a gnu target: the glibc version it links against (zig's default when `None`).
    pub glibc: Option<GlibcVersion>,
}

impl fmt::Display for CompileTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.glibc {
            Some(version) => write!(f, "{} with glibc {version}", self.triple),
            None => write!(f, "{}", self.triple),
        }
    }
}

pub fn is_gnu(triple: &str) -> bool {
    triple.rsplit('-').next().is_some_and(|abi| abi.starts_with("gnu"))
}

/// The target for a platform whose configured target is `configured`, under `policy`, with the
/// workspace's glibc `pin`, for an image on a base with `base`'s C library.
pub fn choose(configured: &str, policy: LibcPolicy, pin: Option<GlibcVersion>, base: Libc) -> CompileTarget {
    let base_glibc = match base {
        Libc::Glibc(version) => version,
        Libc::Musl | Libc::Static => None,
    };
    if is_gnu(configured) {
        return CompileTarget { triple: configured.to_string(), glibc: pin.or(base_glibc) };
    }
    match (policy, base, crate::image::platform::gnu_counterpart(configured)) {
        // A glibc whose version cannot be read: the static binary runs on it whatever it is.
        (LibcPolicy::Auto, Libc::Glibc(Some(_)), Some(triple)) => CompileTarget { triple, glibc: pin.or(base_glibc) },
        (LibcPolicy::Auto, Libc::Glibc(None), Some(triple)) if pin.is_some() => CompileTarget { triple, glibc: pin },
        _ => CompileTarget { triple: configured.to_string(), glibc: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_on_glibc_bases_get_gnu_binaries_for_their_glibc() {
        let v = |text: &str| GlibcVersion::parse(text);
        let check = |configured: &str, policy: LibcPolicy, pin: Option<&str>, base: Libc, expected: &str| {
            assert_eq!(choose(configured, policy, pin.and_then(v), base).to_string(), expected, "{configured} {policy:?} {pin:?} {base}");
        };
        let musl = "aarch64-unknown-linux-musl";
        check(musl, LibcPolicy::Auto, None, Libc::Static, musl);
        check(musl, LibcPolicy::Auto, None, Libc::Musl, musl);
        check(musl, LibcPolicy::Auto, None, Libc::Glibc(v("2.36")), "aarch64-unknown-linux-gnu with glibc 2.36");
        check(musl, LibcPolicy::Auto, Some("2.28"), Libc::Glibc(v("2.36")), "aarch64-unknown-linux-gnu with glibc 2.28");
        check(musl, LibcPolicy::Auto, None, Libc::Glibc(None), musl);
        check(musl, LibcPolicy::Auto, Some("2.31"), Libc::Glibc(None), "aarch64-unknown-linux-gnu with glibc 2.31");
        check(musl, LibcPolicy::Musl, None, Libc::Glibc(v("2.36")), musl);
        check(
            "armv7-unknown-linux-musleabihf",
            LibcPolicy::Auto,
            None,
            Libc::Glibc(v("2.31")),
            "armv7-unknown-linux-gnueabihf with glibc 2.31",
        );
        // A gnu target configured for the platform is every app's, pinned or at its base's glibc.
        let gnu = "x86_64-unknown-linux-gnu";
        check(gnu, LibcPolicy::Musl, None, Libc::Glibc(v("2.31")), "x86_64-unknown-linux-gnu with glibc 2.31");
        check(gnu, LibcPolicy::Auto, Some("2.17"), Libc::Static, "x86_64-unknown-linux-gnu with glibc 2.17");
        check(gnu, LibcPolicy::Auto, None, Libc::Static, gnu);
    }
}
