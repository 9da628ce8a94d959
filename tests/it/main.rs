//! The one integration-test binary. Add new areas as modules here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod audit;
mod auth;
mod chaos;
mod cli;
mod concurrent_writes;
mod external_id;
mod fake_transcripts;
mod faults;
mod groups;
mod idp_sequences;
mod jwks;
mod leak;
mod live;
mod operator;
mod profile_fields;
mod protocol;
mod read_your_writes;
mod reload;
mod support;
mod users;
