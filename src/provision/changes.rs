//! [`ChangeRecord`]: one change the sidecar applied to Zulip, as structured data: which realm
//! and SCIM client asked (and in which request), what was done to which resource, and which
//! attributes it changed, by their SCIM names. [`ChangeRecord::log`] writes it as one `info`
//! line with a field each (target `scim_sidecar::changes`); an audit trail can take the same
//! record.

use serde::Serialize;

use crate::provision::mapping::UserChanges;
use crate::telemetry::context::RequestContext;

/// Member ids listed in a change line at most (the rest are counted).
const MAX_LISTED_MEMBERS: usize = 20;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Update,
    Reactivate,
    Deactivate,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Reactivate => "reactivate",
            Operation::Deactivate => "deactivate",
        }
    }
}

/// One change applied to Zulip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRecord {
    pub realm: String,
    /// The realm's `scim_client_name` (`-` outside a request).
    pub client: String,
    /// The SCIM request that caused it (`None`: not caused by a request).
    pub request_id: Option<String>,
    pub operation: Operation,
    /// `User` or `Group`.
    pub resource: &'static str,
    /// The SCIM id (Zulip's user or group id).
    pub id: u64,
    /// The user's address or the group's name, when known.
    pub address: Option<String>,
    /// The SCIM attributes written, by name (`userName`, `name`, `role`, `active`, …).
    pub attributes: Vec<&'static str>,
    pub members_added: Vec<u64>,
    pub members_removed: Vec<u64>,
}

impl ChangeRecord {
    /// A record for the current request (its id and client from [`RequestContext`]).
    pub fn new(realm: &str, operation: Operation, resource: &'static str, id: u64) -> Self {
        let context = RequestContext::current();
        ChangeRecord {
            realm: realm.to_owned(),
            client: context.as_ref().map_or_else(|| "-".to_owned(), |c| c.client.to_string()),
            request_id: context.map(|c| c.request_id.to_string()),
            operation,
            resource,
            id,
            address: None,
            attributes: Vec::new(),
            members_added: Vec::new(),
            members_removed: Vec::new(),
        }
    }

    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    pub fn attributes(mut self, attributes: impl IntoIterator<Item = &'static str>) -> Self {
        self.attributes.extend(attributes);
        self
    }

    pub fn members(mut self, added: &[u64], removed: &[u64]) -> Self {
        self.members_added = added.to_vec();
        self.members_removed = removed.to_vec();
        if !(added.is_empty() && removed.is_empty()) {
            self.attributes.push("members");
        }
        self
    }

    /// Writes the record as one `info` line.
    pub fn log(&self) {
        let attributes = self.attributes.join(",");
        tracing::info!(
            target: "scim_sidecar::changes",
            realm = %self.realm,
            client = %self.client,
            request_id = self.request_id.as_deref(),
            operation = self.operation.as_str(),
            resource = self.resource,
            id = self.id,
            address = self.address.as_deref(),
            attributes = (!attributes.is_empty()).then_some(attributes.as_str()),
            members_added = id_list(&self.members_added).as_deref(),
            members_removed = id_list(&self.members_removed).as_deref(),
            "{} {} {}", self.operation.as_str(), self.resource, self.id
        );
    }
}

/// The SCIM attributes a user change writes.
pub fn user_attributes(changes: &UserChanges) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (changed, name) in [
        (changes.new_email.is_some(), "userName"),
        (changes.full_name.is_some(), "name"),
        (changes.role.is_some(), "role"),
        (changes.external_id.is_some(), "externalId"),
        (changes.active.is_some(), "active"),
    ] {
        if changed {
            names.push(name);
        }
    }
    names
}

/// `10,11,12`, or the first 20 and `… (+N)`; `None` when empty.
fn id_list(ids: &[u64]) -> Option<String> {
    if ids.is_empty() {
        return None;
    }
    let mut text: Vec<String> = ids.iter().take(MAX_LISTED_MEMBERS).map(u64::to_string).collect();
    if ids.len() > MAX_LISTED_MEMBERS {
        text.push(format!("… (+{})", ids.len() - MAX_LISTED_MEMBERS));
    }
    Some(text.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zulip_client::Role;

    #[test]
    fn a_record_names_its_request_and_attributes() {
        let record = ChangeRecord::new("acme", Operation::Update, "User", 42);
        assert_eq!((record.client.as_str(), record.request_id.as_deref()), ("-", None));
        let changes = UserChanges {
            full_name: Some("Kim".into()),
            role: Some(Role::Administrator),
            ..UserChanges::default()
        };
        let record = record.address("kim@example.com").attributes(user_attributes(&changes));
        assert_eq!(record.attributes, ["name", "role"]);
        let group = ChangeRecord::new("acme", Operation::Update, "Group", 7).members(&[1, 2], &[]);
        assert_eq!(group.attributes, ["members"]);
        assert_eq!(id_list(&(1..=22).collect::<Vec<_>>()).unwrap().rsplit(',').next(), Some("… (+2)"));
        let json = serde_json::to_value(&group).unwrap();
        assert_eq!(json["operation"], "update");
        assert_eq!(json["members_added"], serde_json::json!([1, 2]));
    }

    #[tokio::test]
    async fn inside_a_request_the_record_carries_its_id_and_client() {
        let context = RequestContext { request_id: "req-1".into(), client: "okta".into() };
        let record = RequestContext::scope(Some(context), async {
            ChangeRecord::new("acme", Operation::Create, "User", 1)
        })
        .await;
        assert_eq!((record.client.as_str(), record.request_id.as_deref()), ("okta", Some("req-1")));
    }
}
