//! Discovery documents: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7643 §5–7),
//! built from [`super::schema`] so that what we publish is what we honour.
