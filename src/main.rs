//! The `scim-sidecar` binary: a thin CLI over the library.
fn main() {}
