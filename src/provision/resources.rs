//! The SCIM operations as the HTTP layer calls them: one call per request, whatever the
//! resource type. Each parses the query first (a bad `attributes`, `filter` or `count` is a
//! 400 before anything reaches Zulip), decides what the answer must carry (group members,
//! a user's `groups`), runs the User or Group operation and renders the answer. Writes hold
//! their entity's write order ([`super::ordering`]) for the whole operation.

use serde_json::Value;

use super::ordering::{EntityGuard, EntityKey};
use super::query::{list_response, ListPage, Query, Rendered, Resource};
use super::Realm;
use crate::error::Error;
use scim::schema::GROUP;

impl Realm {
    /// `GET /Users|/Groups` and `POST /Users|/Groups/.search`: one `ListResponse` page.
    pub async fn list(&self, resource: Resource, query: &Query) -> Result<Value, Error> {
        let projection = query.projection()?;
        let list = query.list_query(self.definition(resource))?;
        let mut page = match resource {
            Resource::User => self.list_users(&list).await?,
            Resource::Group => self.list_groups(&list, projection.requests("members", &GROUP)).await?,
        };
        if resource == Resource::User && projection.requests("groups", self.user_type) {
            self.attach_groups(&mut page.resources).await?;
        }
        Ok(list_response(page, &projection, self.user_type))
    }

    /// `POST /.search`: Users and Groups together.
    pub async fn search(&self, query: &Query) -> Result<Value, Error> {
        let projection = query.projection()?;
        let page: ListPage =
            self.search_all(query.parsed_filter()?, query.start_index()?, query.count()?).await?;
        Ok(list_response(page, &projection, self.user_type))
    }

    /// `GET /Users|/Groups/{id}`. `If-None-Match` matching the current version is 304.
    pub async fn get(
        &self,
        resource: Resource,
        id: &str,
        query: &Query,
        if_none_match: Option<&str>,
    ) -> Result<Rendered, Error> {
        let projection = query.projection()?;
        let mut value = match resource {
            Resource::User => self.get_user(id).await?,
            Resource::Group => self.get_group(id, projection.requests("members", &GROUP)).await?,
        };
        if resource == Resource::User && projection.requests("groups", self.user_type) {
            self.attach_groups(std::slice::from_mut(&mut value)).await?;
        }
        let rendered = Rendered::new(value, &projection, self.definition(resource));
        if let (Some(inm), Some(version)) = (if_none_match, rendered.version.as_deref()) {
            if scim::version::if_none_match_satisfied(inm, version) {
                return Err(Error::NotModified { etag: version.to_string() });
            }
        }
        Ok(rendered)
    }

    /// `POST /Users|/Groups`.
    pub async fn create(&self, resource: Resource, body: &Value, query: &Query) -> Result<Rendered, Error> {
        let projection = query.projection()?;
        let _order = match EntityKey::for_create(resource, body) {
            Some(key) => Some(self.order.lock(key).await),
            None => None,
        };
        let value = match resource {
            Resource::User => self.create_user(body).await?,
            Resource::Group => self.create_group(body).await?,
        };
        Ok(Rendered::new(value, &projection, self.definition(resource)))
    }

    /// `PUT /Users|/Groups/{id}`.
    pub async fn replace(
        &self,
        resource: Resource,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        query: &Query,
    ) -> Result<Rendered, Error> {
        let projection = query.projection()?;
        let _order = self.write_order(resource, id).await;
        let value = match resource {
            Resource::User => self.replace_user(id, body, if_match).await?,
            Resource::Group => self.replace_group(id, body, if_match).await?,
        };
        Ok(Rendered::new(value, &projection, self.definition(resource)))
    }

    /// `PATCH /Users|/Groups/{id}`.
    pub async fn patch(
        &self,
        resource: Resource,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        query: &Query,
    ) -> Result<Rendered, Error> {
        let projection = query.projection()?;
        let _order = self.write_order(resource, id).await;
        let value = match resource {
            Resource::User => self.patch_user(id, body, if_match).await?,
            Resource::Group => self.patch_group(id, body, if_match).await?,
        };
        Ok(Rendered::new(value, &projection, self.definition(resource)))
    }

    /// `DELETE /Users|/Groups/{id}`.
    pub async fn delete(&self, resource: Resource, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        let _order = self.write_order(resource, id).await;
        match resource {
            Resource::User => self.delete_user(id, if_match).await,
            Resource::Group => self.delete_group(id, if_match).await,
        }
    }

    /// Waits for earlier writes to this user or group, then holds its write order for the
    /// whole operation ([`super::ordering`]).
    async fn write_order(&self, resource: Resource, id: &str) -> EntityGuard<'_> {
        self.order.lock(EntityKey::Resource(resource, id.to_owned())).await
    }
}
