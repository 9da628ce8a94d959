//! Discovery documents: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7643 §5–7),
//! built from [`super::schema`] so that what we publish is what we honour.

#[derive(Debug, Clone)]
pub struct Capabilities {
    pub max_results: usize,
}
impl Default for Capabilities {
    fn default() -> Self {
        unimplemented!()
    }
}
pub fn service_provider_config(_b: &str, _c: &Capabilities) -> serde_json::Value {
    unimplemented!()
}
pub fn resource_types(_b: &str) -> Vec<serde_json::Value> {
    unimplemented!()
}
pub fn resource_type(_b: &str, _n: &str) -> Option<serde_json::Value> {
    unimplemented!()
}
pub fn schemas(_b: &str) -> Vec<serde_json::Value> {
    unimplemented!()
}
pub fn schema(_b: &str, _u: &str) -> Option<serde_json::Value> {
    unimplemented!()
}
