//! `FakeZulip`: an in-memory Zulip REST server at the HTTP level, for tests and `demo`.
