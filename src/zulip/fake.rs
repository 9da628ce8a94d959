//! stub (fake helper owns this file)
#[derive(Debug, Clone)]
pub struct FakeZulip;
pub struct FakeZulipBuilder;
#[allow(clippy::new_without_default)]
impl FakeZulip {
    pub fn builder() -> FakeZulipBuilder {
        FakeZulipBuilder
    }
    pub fn base_url(&self) -> url::Url {
        unimplemented!()
    }
    pub async fn shutdown(self) {}
}
impl FakeZulipBuilder {
    pub fn with_demo_data(self) -> Self {
        self
    }
    pub async fn start(self) -> std::io::Result<FakeZulip> {
        unimplemented!()
    }
}
