//! The one integration-test binary. Add new areas as modules here.

mod support;
mod users;
