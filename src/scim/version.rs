//! stub
pub fn weak_etag(_r: &serde_json::Value) -> String {
    unimplemented!()
}
pub fn if_match_satisfied(_a: &str, _b: &str) -> bool {
    unimplemented!()
}
pub fn if_none_match_satisfied(_a: &str, _b: &str) -> bool {
    unimplemented!()
}
