//! The one integration-test binary. Add new areas as modules here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod external_id;
mod fake_transcripts;
mod faults;
mod groups;
mod idp_sequences;
mod live;
mod protocol;
mod support;
mod users;
