//! Attribute definitions (RFC 7643 §2, §7) of the resource types the sidecar serves. They
//! drive filter case sensitivity, PATCH mutability checks, `returned` rules for projection
//! and the `/Schemas` discovery documents: what we publish is exactly what we honour.

/// RFC 7643 §2.3 attribute data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute (or sub-attribute) definition.
#[derive(Debug, Clone, Copy)]
pub struct AttributeDef {
    pub name: &'static str,
    pub type_: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttributeDef],
    pub description: &'static str,
}

/// A schema (core or extension) with its attributes.
#[derive(Debug, Clone, Copy)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

/// A resource type: endpoint, core schema and extensions (with whether each is required).
#[derive(Debug, Clone, Copy)]
pub struct ResourceTypeDef {
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static SchemaDef,
    pub extensions: &'static [(&'static SchemaDef, bool)],
}

// === impl AttributeDef ===

impl AttributeDef {
    /// A read-write, optional, single-valued, case-insensitive string with default return.
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        AttributeDef {
            name,
            type_: AttrType::String,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description,
        }
    }

    pub const fn of_type(mut self, type_: AttrType) -> Self {
        self.type_ = type_;
        self
    }
    pub const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    pub const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    pub const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    pub const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    pub const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    pub const fn references(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    pub const fn complex(mut self, subs: &'static [AttributeDef]) -> Self {
        self.type_ = AttrType::Complex;
        self.sub_attributes = subs;
        self
    }

    /// Sub-attribute by name, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

// === impl SchemaDef ===

impl SchemaDef {
    /// Top-level attribute by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

// === impl ResourceTypeDef ===

impl ResourceTypeDef {
    /// Every schema URN a resource of this type may carry (core first).
    pub fn schema_urns(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.schema.id).chain(self.extensions.iter().map(|(s, _)| s.id))
    }

    /// The schema with this URN (case-insensitive), core or extension.
    pub fn schema_by_urn(&self, urn: &str) -> Option<&'static SchemaDef> {
        if self.schema.id.eq_ignore_ascii_case(urn) {
            return Some(self.schema);
        }
        self.extensions.iter().map(|(s, _)| *s).find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Resolve an attribute: `urn` is the schema URN prefix if the path had one (else the
    /// core schema and the common attributes are searched), `name` the top-level attribute,
    /// `sub` an optional sub-attribute. Case-insensitive throughout.
    pub fn find(&self, urn: Option<&str>, name: &str, sub: Option<&str>) -> Option<&'static AttributeDef> {
        let top = match urn {
            Some(urn) => self.schema_by_urn(urn)?.attribute(name)?,
            None => COMMON_ATTRIBUTES
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(name))
                .or_else(|| self.schema.attribute(name))?,
        };
        match sub {
            None => Some(top),
            Some(sub) => top.sub(sub),
        }
    }
}

/// RFC 7643 §3.1 common attributes, carried by every resource.
pub static COMMON_ATTRIBUTES: &[AttributeDef] = &[
    AttributeDef::string("id", "Unique identifier assigned by the service provider (the Zulip id).")
        .case_exact()
        .mutability(Mutability::ReadOnly)
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
    AttributeDef::string("meta", "Resource metadata.")
        .mutability(Mutability::ReadOnly)
        .complex(META_SUBS),
];

static META_SUBS: &[AttributeDef] = &[
    AttributeDef::string("resourceType", "The resource type.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("created", "When the resource was added to the service provider.")
        .of_type(AttrType::DateTime)
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("lastModified", "When the resource was last modified.")
        .of_type(AttrType::DateTime)
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("location", "The URI of the resource.")
        .of_type(AttrType::Reference)
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("version", "The weak entity tag of the resource.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
];

static NAME_SUBS: &[AttributeDef] = &[
    AttributeDef::string("formatted", "The full name (Zulip's full_name)."),
    AttributeDef::string("familyName", "Family name: the part of Zulip's full_name after the first space."),
    AttributeDef::string("givenName", "Given name: the part of Zulip's full_name before the first space."),
];

static EMAIL_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The e-mail address (Zulip's delivery e-mail)."),
    AttributeDef::string("display", "A human-readable name for the address."),
    AttributeDef::string("type", "The kind of address.").canonical(&["work", "home", "other"]),
    AttributeDef::string("primary", "Whether this is the primary address.").of_type(AttrType::Boolean),
];

static GROUP_REF_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the group.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("$ref", "The URI of the group.")
        .of_type(AttrType::Reference)
        .references(&["Group"])
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("display", "The group's displayName.").mutability(Mutability::ReadOnly),
    AttributeDef::string("type", "direct: the user is a direct member.")
        .canonical(&["direct", "indirect"])
        .mutability(Mutability::ReadOnly),
];

/// Zulip's five roles, as the SCIM `role` attribute spells them.
pub const ROLE_VALUES: &[&str] = &["owner", "administrator", "moderator", "member", "guest"];

/// `urn:ietf:params:scim:schemas:core:2.0:User`, restricted to what Zulip stores.
pub static USER_SCHEMA_DEF: SchemaDef = SchemaDef {
    id: super::USER_SCHEMA,
    name: "User",
    description: "User Account (a Zulip account of this organization)",
    attributes: &[
        AttributeDef::string("userName", "The Zulip account's e-mail address (delivery e-mail).")
            .required()
            .unique(Uniqueness::Server),
        AttributeDef::string("name", "The components of the user's name.").complex(NAME_SUBS),
        AttributeDef::string("displayName", "The name shown in Zulip (full_name)."),
        AttributeDef::string("active", "Whether the Zulip account is active (false: deactivated).")
            .of_type(AttrType::Boolean),
        AttributeDef::string("emails", "E-mail addresses: the account's delivery e-mail, type work, primary.")
            .multi()
            .complex(EMAIL_SUBS),
        AttributeDef::string("role", "Zulip organization role.").canonical(ROLE_VALUES),
        AttributeDef::string("groups", "Zulip user groups the user is a direct member of.")
            .multi()
            .mutability(Mutability::ReadOnly)
            .complex(GROUP_REF_SUBS),
    ],
};

static MEMBER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the member user.")
        .case_exact()
        .mutability(Mutability::Immutable),
    AttributeDef::string("$ref", "The URI of the member.")
        .of_type(AttrType::Reference)
        .references(&["User"])
        .case_exact()
        .mutability(Mutability::Immutable),
    AttributeDef::string("display", "The member's name.").mutability(Mutability::ReadOnly),
    AttributeDef::string("type", "The kind of member: always User.")
        .canonical(&["User"])
        .mutability(Mutability::Immutable),
];

/// `urn:ietf:params:scim:schemas:core:2.0:Group`
pub static GROUP_SCHEMA_DEF: SchemaDef = SchemaDef {
    id: super::GROUP_SCHEMA,
    name: "Group",
    description: "Group (a Zulip user group)",
    attributes: &[
        AttributeDef::string("displayName", "The Zulip user group's name.")
            .required()
            .case_exact()
            .unique(Uniqueness::Server),
        AttributeDef::string("members", "Direct members: active human users.")
            .multi()
            .complex(MEMBER_SUBS),
    ],
};

/// The `User` resource type.
pub static USER: ResourceTypeDef = ResourceTypeDef {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: &USER_SCHEMA_DEF,
    extensions: &[],
};

/// The `Group` resource type.
pub static GROUP: ResourceTypeDef = ResourceTypeDef {
    name: "Group",
    endpoint: "/Groups",
    description: "Group",
    schema: &GROUP_SCHEMA_DEF,
    extensions: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_cover_common_attributes() {
        assert_eq!(USER.find(None, "USERNAME", None).map(|a| a.name), Some("userName"));
        assert_eq!(USER.find(None, "name", Some("GIVENNAME")).map(|a| a.name), Some("givenName"));
        assert_eq!(USER.find(None, "id", None).map(|a| a.case_exact), Some(true));
        assert_eq!(
            USER.find(Some("urn:ietf:params:scim:schemas:core:2.0:user"), "emails", Some("value"))
                .map(|a| a.name),
            Some("value")
        );
        assert!(USER.find(None, "nickName", None).is_none());
        assert!(GROUP.find(None, "displayName", None).is_some_and(|a| a.case_exact));
    }
}
