//! The one integration-test binary. Add new areas as modules here.

mod fake_transcripts;
mod groups;
mod support;
mod users;
