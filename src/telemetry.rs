//! stub (config helper owns this file)
use std::time::Duration;
#[derive(Debug, Default)]
pub struct Metrics {}
#[allow(unused_variables)]
impl Metrics {
    pub fn new() -> Metrics {
        Metrics {}
    }
    pub fn observe_scim(
        &self,
        realm: &str,
        method: &str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
    }
    pub fn observe_zulip(&self, realm: &str, endpoint: &str, status: u16, elapsed: Duration) {}
    pub fn rate_limited(&self, realm: &str) {}
    pub fn encode(&self) -> String {
        String::new()
    }
}
