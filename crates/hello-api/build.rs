//! The greeting comes from the monorepo's API definitions (`api/greeting.txt`), outside this
//! crate: the build script watches that directory, so cargo rebuilds when it changes.

fn main() {
    println!("cargo:rerun-if-changed=../../api");
    let greeting = std::fs::read_to_string("../../api/greeting.txt").expect("api/greeting.txt is readable");
    println!("cargo:rustc-env=HELLO_API_GREETING={}", greeting.trim());
}
