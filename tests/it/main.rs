//! The integration-test binary: one module per area.

mod fake_transcripts;
