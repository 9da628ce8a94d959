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
    AttributeDef::string("externalId", "Identifier of the resource as defined by the provisioning client.")
        .case_exact(),
    AttributeDef::string("meta", "Resource metadata.").mutability(Mutability::ReadOnly).complex(META_SUBS),
];

static META_SUBS: &[AttributeDef] = &[
    AttributeDef::string("resourceType", "The resource type.").case_exact().mutability(Mutability::ReadOnly),
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
    AttributeDef::string("display", "Not stored (a Zulip account has one address).")
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("type", "The kind of address: the account's one address is returned as work.")
        .canonical(&["work", "home", "other"]),
    AttributeDef::string("primary", "Whether this is the primary address: the account's one address is.")
        .of_type(AttrType::Boolean),
];

static GROUP_REF_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the group.").case_exact().mutability(Mutability::ReadOnly),
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
        // A Zulip account always has a name (one full_name), so `name` and `displayName`
        // cannot be removed: they are published as required. On create, a missing name is
        // derived from the userName's local part.
        AttributeDef::string("name", "The components of the user's name (one Zulip full_name).")
            .required()
            .complex(NAME_SUBS),
        AttributeDef::string("displayName", "The name shown in Zulip (full_name).").required(),
        AttributeDef::string("active", "Whether the Zulip account is active (false: deactivated).")
            .of_type(AttrType::Boolean),
        // Like name, published as required: a Zulip account always has its one address, so
        // emails cannot be removed; on create a missing emails is the userName.
        AttributeDef::string(
            "emails",
            "The account's one address, the same as userName: its primary (or only work) entry changes it as userName does.",
        )
        .multi()
        .required()
        .complex(EMAIL_SUBS),
        AttributeDef::string("role", "Zulip organization role.").canonical(ROLE_VALUES),
        AttributeDef::string(
            "groups",
            "Zulip user groups the user is a direct member of (returned when requested).",
        )
        .multi()
        .mutability(Mutability::ReadOnly)
        .returned(Returned::Request)
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
        // RFC 7643 §4.2: caseExact false, so filters compare it case-insensitively; Zulip
        // keeps names unique only exactly ("Eng" and "eng" may both exist).
        AttributeDef::string(
            "displayName",
            "The Zulip user group's name: compared case-insensitively in filters; unique as Zulip keeps it, exactly (names differing only in case may coexist).",
        )
        .required()
        .unique(Uniqueness::Server),
        AttributeDef::string("members", "Direct members: active human users.").multi().complex(MEMBER_SUBS),
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

/// Every resource type the sidecar serves, in the order `/ResourceTypes` lists them.
pub fn resource_types() -> &'static [&'static ResourceTypeDef] {
    static ALL: [&ResourceTypeDef; 2] = [&USER, &GROUP];
    &ALL
}

// === meta-schemas (RFC 7643 §5, §6, §7; representations in §8.7.2) ===
//
// They describe the discovery documents themselves. Every attribute is read-only; the
// `schemaExtensions` attribute is multi-valued (the `false` printed in RFC 7643 §8.7.2 is a
// known erratum: the attribute holds a list).

const fn meta_attr(name: &'static str, description: &'static str) -> AttributeDef {
    AttributeDef::string(name, description).mutability(Mutability::ReadOnly)
}

static SUPPORTED_SUBS: &[AttributeDef] =
    &[meta_attr("supported", "Whether the feature is supported.").of_type(AttrType::Boolean).required()];

static BULK_SUBS: &[AttributeDef] = &[
    meta_attr("supported", "Whether the feature is supported.").of_type(AttrType::Boolean).required(),
    meta_attr("maxOperations", "The maximum number of operations in one bulk request.")
        .of_type(AttrType::Integer)
        .required(),
    meta_attr("maxPayloadSize", "The maximum payload size of one bulk request, in bytes.")
        .of_type(AttrType::Integer)
        .required(),
];

static FILTER_SUBS: &[AttributeDef] = &[
    meta_attr("supported", "Whether the feature is supported.").of_type(AttrType::Boolean).required(),
    meta_attr("maxResults", "The maximum number of resources returned in one response.")
        .of_type(AttrType::Integer)
        .required(),
];

static AUTHENTICATION_SCHEME_SUBS: &[AttributeDef] = &[
    meta_attr("type", "The authentication scheme.").required().canonical(&[
        "oauth",
        "oauth2",
        "oauthbearertoken",
        "httpbasic",
        "httpdigest",
    ]),
    meta_attr("name", "The common name of the authentication scheme.").required(),
    meta_attr("description", "A description of the authentication scheme.").required(),
    meta_attr("specUri", "The URL of the authentication scheme's specification.")
        .of_type(AttrType::Reference)
        .references(&["external"]),
    meta_attr("documentationUri", "The URL of the authentication scheme's usage documentation.")
        .of_type(AttrType::Reference)
        .references(&["external"]),
    meta_attr("primary", "Whether this is the preferred authentication scheme.").of_type(AttrType::Boolean),
];

/// `urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig` (RFC 7643 §5).
pub static SERVICE_PROVIDER_CONFIG_SCHEMA_DEF: SchemaDef = SchemaDef {
    id: super::SERVICE_PROVIDER_CONFIG_SCHEMA,
    name: "ServiceProviderConfig",
    description: "Schema for representing the service provider's configuration",
    attributes: &[
        meta_attr("documentationUri", "The URL of the service provider's help documentation.")
            .of_type(AttrType::Reference)
            .references(&["external"]),
        meta_attr("patch", "PATCH configuration options.").required().complex(SUPPORTED_SUBS),
        meta_attr("bulk", "Bulk configuration options.").required().complex(BULK_SUBS),
        meta_attr("filter", "Filter configuration options.").required().complex(FILTER_SUBS),
        meta_attr("changePassword", "Password change configuration options.")
            .required()
            .complex(SUPPORTED_SUBS),
        meta_attr("sort", "Sorting configuration options.").required().complex(SUPPORTED_SUBS),
        meta_attr("etag", "ETag configuration options.").required().complex(SUPPORTED_SUBS),
        meta_attr("authenticationSchemes", "The supported authentication schemes.")
            .multi()
            .required()
            .complex(AUTHENTICATION_SCHEME_SUBS),
    ],
};

static SCHEMA_EXTENSION_SUBS: &[AttributeDef] = &[
    meta_attr("schema", "The URI of an extension schema.")
        .of_type(AttrType::Reference)
        .references(&["uri"])
        .case_exact()
        .required(),
    meta_attr("required", "Whether resources of this type must carry the extension.")
        .of_type(AttrType::Boolean)
        .required(),
];

/// `urn:ietf:params:scim:schemas:core:2.0:ResourceType` (RFC 7643 §6).
pub static RESOURCE_TYPE_SCHEMA_DEF: SchemaDef = SchemaDef {
    id: super::RESOURCE_TYPE_SCHEMA,
    name: "ResourceType",
    description: "Specifies the schema that describes a SCIM resource type",
    attributes: &[
        meta_attr("id", "The resource type's server-unique id (the same as its name)."),
        meta_attr("name", "The resource type name, e.g. User.").required(),
        meta_attr("description", "The resource type's human-readable description."),
        meta_attr("endpoint", "The resource type's endpoint relative to the base URL, e.g. /Users.")
            .of_type(AttrType::Reference)
            .references(&["uri"])
            .required(),
        meta_attr("schema", "The URI of the resource type's core schema.")
            .of_type(AttrType::Reference)
            .references(&["uri"])
            .case_exact()
            .required(),
        meta_attr("schemaExtensions", "The extension schemas of the resource type.")
            .multi()
            .complex(SCHEMA_EXTENSION_SUBS),
    ],
};

/// The characteristics of an attribute definition, without `subAttributes` (used one level
/// down, where RFC 7643 §2.3.8 forbids further nesting).
const ATTRIBUTE_CHARACTERISTICS: [AttributeDef; 11] = [
    meta_attr("name", "The attribute's name.").case_exact().required(),
    meta_attr("type", "The attribute's data type.").required().canonical(&[
        "string",
        "complex",
        "boolean",
        "decimal",
        "integer",
        "dateTime",
        "reference",
        "binary",
    ]),
    meta_attr("multiValued", "Whether the attribute is multi-valued.").of_type(AttrType::Boolean).required(),
    meta_attr("description", "The attribute's human-readable description."),
    meta_attr("required", "Whether the attribute is required.").of_type(AttrType::Boolean),
    meta_attr("canonicalValues", "Suggested canonical values of the attribute.").multi(),
    meta_attr("caseExact", "Whether string values are case sensitive.").of_type(AttrType::Boolean),
    meta_attr("mutability", "When the attribute's value may be (re)defined.").case_exact().canonical(&[
        "readOnly",
        "readWrite",
        "immutable",
        "writeOnly",
    ]),
    meta_attr("returned", "When the attribute is returned in a response.")
        .case_exact()
        .canonical(&["always", "never", "default", "request"]),
    meta_attr("uniqueness", "How the service provider enforces uniqueness of values.")
        .case_exact()
        .canonical(&["none", "server", "global"]),
    meta_attr("referenceTypes", "The resource types a reference attribute may refer to.")
        .multi()
        .case_exact(),
];

static ATTRIBUTE_LEAF_SUBS: &[AttributeDef] = &ATTRIBUTE_CHARACTERISTICS;

static ATTRIBUTE_SUBS: &[AttributeDef] = &[
    ATTRIBUTE_CHARACTERISTICS[0],
    ATTRIBUTE_CHARACTERISTICS[1],
    ATTRIBUTE_CHARACTERISTICS[2],
    ATTRIBUTE_CHARACTERISTICS[3],
    ATTRIBUTE_CHARACTERISTICS[4],
    ATTRIBUTE_CHARACTERISTICS[5],
    ATTRIBUTE_CHARACTERISTICS[6],
    ATTRIBUTE_CHARACTERISTICS[7],
    ATTRIBUTE_CHARACTERISTICS[8],
    ATTRIBUTE_CHARACTERISTICS[9],
    ATTRIBUTE_CHARACTERISTICS[10],
    meta_attr("subAttributes", "The sub-attributes of a complex attribute.")
        .multi()
        .complex(ATTRIBUTE_LEAF_SUBS),
];

/// `urn:ietf:params:scim:schemas:core:2.0:Schema` (RFC 7643 §7).
pub static SCHEMA_SCHEMA_DEF: SchemaDef = SchemaDef {
    id: super::SCHEMA_SCHEMA,
    name: "Schema",
    description: "Specifies the schema that describes a SCIM schema",
    attributes: &[
        meta_attr("id", "The unique URI of the schema.").case_exact().required(),
        meta_attr("name", "The schema's human-readable name."),
        meta_attr("description", "The schema's human-readable description."),
        meta_attr("attributes", "The attributes of the schema and their characteristics.")
            .multi()
            .required()
            .complex(ATTRIBUTE_SUBS),
    ],
};

/// The three meta-schemas (`ResourceType`, `ServiceProviderConfig`, `Schema`), which `/Schemas`
/// publishes next to the resource schemas.
pub static META_SCHEMAS: &[&SchemaDef] =
    &[&RESOURCE_TYPE_SCHEMA_DEF, &SERVICE_PROVIDER_CONFIG_SCHEMA_DEF, &SCHEMA_SCHEMA_DEF];

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
        assert!(GROUP.find(None, "displayName", None).is_some_and(|a| !a.case_exact));
    }
}
