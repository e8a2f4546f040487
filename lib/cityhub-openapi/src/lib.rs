//! The OpenAPI 3.1 document of every route a cityhub serves (`GET /openapi.json`).
//!
//! The document is kept by hand, as one table of operations ([`OPERATIONS`]) from which
//! [`document`] builds the JSON: each row names its method, its path (the router's template,
//! `{*rest}` written `{rest}`), its tag, its query parameters (by name, typed once in
//! [`parameter`]), its request body and its answers; every operation answers its errors as
//! ProblemDetails (the CKAN API excepted: CKAN's error envelope). Kept by hand rather than
//! generated from handler annotations because the ~150 handlers live in six crates whose
//! extractors already say what they read: annotating each would repeat that in a second form,
//! and would still need a test that the router and the annotations agree. That test is
//! cityhub-http's `openapi::the_document_and_the_access_table_name_the_same_operations`,
//! which compares this table with the access table (both ways); the access table is in turn
//! checked against the router. The query parameters are checked against the handlers by
//! cli/tests/openapi.rs (each operation's refusal of an unknown parameter names the ones it
//! takes), and the long lists are one constant each ([`query`]) that the handlers use.
//!
//! **May:** describe. **Never:** depend on another crate of the workspace, do I/O, or answer a
//! request (cityhub-http serves the document).

#![recursion_limit = "256"]

use serde_json::{json, Map, Value};

/// One documented operation.
pub struct Operation {
    pub method: &'static str,
    /// The path template, parameters in braces.
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Query parameter names, each typed in [`parameter`].
    pub query: &'static [&'static str],
    /// The request body's schema (a name in `components/schemas`), if it takes one.
    pub body: Option<&'static str>,
    /// The successful answers: status and the schema of the body (`None`: no body, or a body
    /// that is not JSON).
    pub ok: &'static [(&'static str, Option<&'static str>)],
    /// How errors are answered.
    pub errors: Errors,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// NGSI-LD ProblemDetails (`application/json`, as every NGSI-LD answer).
    Problem,
    /// CKAN's error envelope (`{"success": false, "error": {...}}`) for an action's own errors,
    /// ProblemDetails for what the hub refuses before the action (access, unknown parameters).
    Ckan,
}

const NGSI: &str = "/ngsi-ld/v1";

/// The query parameters of the operations that take many: the one list each, which the
/// handlers' allowed-parameter lists are (`cityhub_http::extract::Allowed`, the catalogue's
/// CKAN actions) and the table below documents. Short lists are written in the table; the
/// black-box test `every_operation_documents_exactly_the_query_parameters_its_handler_takes`
/// (cli/tests/openapi.rs) checks every row against what its handler refuses.
pub mod query {
    pub const ENTITY_QUERY: &[&str] = &[
        "id",
        "idPattern",
        "type",
        "attrs",
        "pick",
        "omit",
        "q",
        "scopeQ",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "geometryProperty",
        "lang",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
        "csf",
        "datasetId",
        "expandValues",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "orderBy",
        "collation",
        "jsonKeys",
    ];
    pub const ENTITY_RETRIEVE: &[&str] = &[
        "attrs",
        "pick",
        "omit",
        "options",
        "format",
        "lang",
        "geometryProperty",
        "local",
        "type",
        "datasetId",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "via",
    ];
    pub const ENTITY_QUERY_POST: &[&str] = &[
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
        "lang",
        "join",
        "joinLevel",
        "orderBy",
        "collation",
    ];
    pub const TEMPORAL_RETRIEVE: &[&str] = &[
        "attrs",
        "pick",
        "omit",
        "options",
        "format",
        "lang",
        "local",
        "datasetId",
        "timerel",
        "timeAt",
        "endTimeAt",
        "timeproperty",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
        "via",
    ];
    pub const TEMPORAL_QUERY: &[&str] = &[
        "id",
        "idPattern",
        "type",
        "attrs",
        "pick",
        "omit",
        "q",
        "scopeQ",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "lang",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
        "datasetId",
        "timerel",
        "timeAt",
        "endTimeAt",
        "timeproperty",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
        "orderBy",
        "csf",
        "via",
    ];
    pub const TEMPORAL_QUERY_POST: &[&str] =
        &["limit", "offset", "count", "options", "format", "local", "lang", "lastN", "orderBy", "collation"];
    pub const CSOURCE_QUERY: &[&str] = &[
        "id",
        "idPattern",
        "type",
        "attrs",
        "q",
        "csf",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "timeproperty",
        "timerel",
        "timeAt",
        "endTimeAt",
        "limit",
        "offset",
        "count",
        "options",
        "lang",
        "local",
    ];
    pub const CKAN_QUERY: &[&str] = &[
        "id",
        "q",
        "fq",
        "rows",
        "start",
        "sort",
        "all_fields",
        "include_datasets",
        "limit",
        "offset",
        "include_extras",
        "include_private",
        "facet",
        "facet.field",
        "facet.limit",
        "use_default_schema",
        "include_tracking",
        "name",
        "organizations",
        "order_by",
        "include_dataset_count",
        "callback",
    ];
    pub const AUDIT_QUERY: &[&str] =
        &["tenant", "subject", "operation", "outcome", "since", "until", "limit", "offset", "count"];
}

use query::*;

const NONE: &[(&str, Option<&str>)] = &[("204", None)];
const BATCH: &[(&str, Option<&str>)] = &[
    ("200", Some("BatchOperationResult")),
    ("201", Some("BatchIds")),
    ("204", None),
    ("207", Some("BatchOperationResult")),
];
const UPDATED: &[(&str, Option<&str>)] = &[("204", None), ("207", Some("UpdateResult"))];
const OBJECT: &[(&str, Option<&str>)] = &[("200", Some("Object"))];
const LIST: &[(&str, Option<&str>)] = &[("200", Some("List"))];
const CREATED: &[(&str, Option<&str>)] = &[("201", Some("Any"))];
const ANY: &[(&str, Option<&str>)] = &[("200", Some("Any"))];

macro_rules! op {
    ($m:literal, $p:expr, $tag:literal, $sum:literal, $q:expr, $body:expr, $ok:expr) => {
        op!($m, $p, $tag, $sum, $q, $body, $ok, Errors::Problem)
    };
    ($m:literal, $p:expr, $tag:literal, $sum:literal, $q:expr, $body:expr, $ok:expr, $err:expr) => {
        Operation { method: $m, path: $p, tag: $tag, summary: $sum, query: $q, body: $body, ok: $ok, errors: $err }
    };
}

macro_rules! v1 {
    ($p:literal) => {
        concat!("/ngsi-ld/v1", $p)
    };
}

/// Every operation the hub serves, one row each (a table: kept unformatted).
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    // Context information (clause 5.6, 5.7).
    op!("POST", v1!("/entities"), "Entities", "Create an entity", &["local"], Some("EntityIn"), &[("201", None)]),
    op!("GET", v1!("/entities"), "Entities", "Query entities", ENTITY_QUERY, None, &[("200", Some("EntityList"))]),
    op!("DELETE", v1!("/entities"), "Entities", "Purge entities", &["id", "idPattern", "type", "q", "scopeQ", "keep", "drop", "local"], None, NONE),
    op!("PUT", v1!("/entities"), "Entities", "Refused (400): replacing needs the entity id in the path, PUT /entities/{id}", &[], None, &[]),
    op!("PATCH", v1!("/entities"), "Entities", "Refused (400): merging needs the entity id in the path, PATCH /entities/{id}; many entities: POST /entityOperations/merge", &[], None, &[]),
    op!("GET", v1!("/entities/{id}"), "Entities", "Retrieve an entity", ENTITY_RETRIEVE, None, &[("200", Some("Entity"))]),
    op!("DELETE", v1!("/entities/{id}"), "Entities", "Delete an entity", &["local", "type"], None, NONE),
    op!("PUT", v1!("/entities/{id}"), "Entities", "Replace an entity", &["local", "type"], Some("EntityFragment"), NONE),
    op!("PATCH", v1!("/entities/{id}"), "Entities", "Merge into an entity", &["local", "type", "options", "format"], Some("EntityFragment"), UPDATED),
    op!("POST", v1!("/entities/{id}/attrs"), "Entities", "Append attributes", &["options", "local"], Some("EntityFragment"), UPDATED),
    op!("PATCH", v1!("/entities/{id}/attrs"), "Entities", "Update attributes", &["options", "local"], Some("EntityFragment"), UPDATED),
    op!("PATCH", v1!("/entities/{id}/attrs/{attr}"), "Entities", "Partially update an attribute", &["local"], Some("Attribute"), NONE),
    op!("PUT", v1!("/entities/{id}/attrs/{attr}"), "Entities", "Replace an attribute", &["local"], Some("Attribute"), NONE),
    op!("DELETE", v1!("/entities/{id}/attrs/{attr}"), "Entities", "Delete an attribute", &["datasetId", "deleteAll", "local", "lang"], None, NONE),
    op!("POST", v1!("/entityOperations/create"), "Batch", "Create entities", &["local"], Some("EntityArray"), BATCH),
    op!("POST", v1!("/entityOperations/upsert"), "Batch", "Upsert entities", &["options", "local"], Some("EntityArray"), BATCH),
    op!("POST", v1!("/entityOperations/update"), "Batch", "Update entities", &["options", "local"], Some("EntityArray"), BATCH),
    op!("POST", v1!("/entityOperations/delete"), "Batch", "Delete entities", &["local"], Some("IdArray"), BATCH),
    op!("POST", v1!("/entityOperations/merge"), "Batch", "Merge entities", &["options", "local"], Some("EntityArray"), BATCH),
    op!("POST", v1!("/entityOperations/query"), "Entities", "Query entities (POST)", ENTITY_QUERY_POST, Some("Query"), &[("200", Some("EntityList"))]),
    op!("GET", v1!("/types"), "Discovery", "Entity types", &["details", "local", "via"], None, ANY),
    op!("GET", v1!("/types/{type}"), "Discovery", "One entity type", &["local", "via"], None, OBJECT),
    op!("GET", v1!("/attributes"), "Discovery", "Attributes", &["details", "local", "via"], None, ANY),
    op!("GET", v1!("/attributes/{attr}"), "Discovery", "One attribute", &["local", "via"], None, OBJECT),
    // Temporal (clause 5.6.11 ff., 5.7.3 ff.).
    op!("POST", v1!("/temporal/entities"), "Temporal", "Create or add to a temporal entity", &["local"], Some("EntityIn"), &[("201", None), ("204", None)]),
    op!("GET", v1!("/temporal/entities"), "Temporal", "Query temporal entities", TEMPORAL_QUERY, None, &[("200", Some("EntityList"))]),
    op!("GET", v1!("/temporal/entities/{id}"), "Temporal", "Retrieve a temporal entity", TEMPORAL_RETRIEVE, None, &[("200", Some("Entity"))]),
    op!("DELETE", v1!("/temporal/entities/{id}"), "Temporal", "Delete a temporal entity", &["local", "type"], None, NONE),
    op!("POST", v1!("/temporal/entities/{id}/attrs"), "Temporal", "Add attribute instances", &["local"], Some("EntityFragment"), &[("204", None), ("207", Some("UpdateResult"))]),
    op!("DELETE", v1!("/temporal/entities/{id}/attrs/{attr}"), "Temporal", "Delete an attribute's history", &["datasetId", "deleteAll", "local"], None, NONE),
    op!("PATCH", v1!("/temporal/entities/{id}/attrs/{attr}/{instance}"), "Temporal", "Modify an attribute instance", &["local"], Some("EntityFragment"), NONE),
    op!("DELETE", v1!("/temporal/entities/{id}/attrs/{attr}/{instance}"), "Temporal", "Delete an attribute instance", &["local"], None, NONE),
    op!("POST", v1!("/temporal/entityOperations/query"), "Temporal", "Query temporal entities (POST)", TEMPORAL_QUERY_POST, Some("Query"), &[("200", Some("EntityList"))]),
    // Subscriptions (clause 5.8).
    op!("POST", v1!("/subscriptions"), "Subscriptions", "Create a subscription", &["local"], Some("Subscription"), &[("201", None)]),
    op!("GET", v1!("/subscriptions"), "Subscriptions", "Query subscriptions", &["limit", "offset", "count", "options", "local"], None, &[("200", Some("SubscriptionList"))]),
    op!("GET", v1!("/subscriptions/{id}"), "Subscriptions", "Retrieve a subscription", &["options", "local"], None, &[("200", Some("SubscriptionOut"))]),
    op!("PATCH", v1!("/subscriptions/{id}"), "Subscriptions", "Update a subscription", &["local"], Some("Object"), NONE),
    op!("DELETE", v1!("/subscriptions/{id}"), "Subscriptions", "Delete a subscription", &["local"], None, NONE),
    // @contexts (clause 5.13).
    op!("GET", v1!("/jsonldContexts"), "Contexts", "List @contexts", &["details", "kind"], None, LIST),
    op!("POST", v1!("/jsonldContexts"), "Contexts", "Host an @context", &[], Some("Object"), &[("201", None)]),
    op!("GET", v1!("/jsonldContexts/{id}"), "Contexts", "Serve an @context", &["details"], None, OBJECT),
    op!("DELETE", v1!("/jsonldContexts/{id}"), "Contexts", "Delete or reload an @context", &["reload"], None, NONE),
    op!("GET", v1!("/info/sourceIdentity"), "Discovery", "This hub's identity as a context source", &[], None, OBJECT),
    // Context sources (clause 5.9, 5.11).
    op!("POST", v1!("/csourceRegistrations"), "Context sources", "Register a context source", &[], Some("Object"), &[("201", None)]),
    op!("GET", v1!("/csourceRegistrations"), "Context sources", "Query registrations", CSOURCE_QUERY, None, LIST),
    op!("GET", v1!("/csourceRegistrations/{id}"), "Context sources", "Retrieve a registration", &["options", "lang", "local"], None, OBJECT),
    op!("PATCH", v1!("/csourceRegistrations/{id}"), "Context sources", "Update a registration", &[], Some("Object"), NONE),
    op!("DELETE", v1!("/csourceRegistrations/{id}"), "Context sources", "Delete a registration", &[], None, NONE),
    op!("POST", v1!("/csourceSubscriptions"), "Context sources", "Subscribe to registrations", &["local"], Some("Subscription"), &[("201", None)]),
    op!("GET", v1!("/csourceSubscriptions"), "Context sources", "Query registration subscriptions", &["limit", "offset", "count", "options", "local"], None, &[("200", Some("SubscriptionList"))]),
    op!("GET", v1!("/csourceSubscriptions/{id}"), "Context sources", "Retrieve a registration subscription", &["options", "local"], None, &[("200", Some("SubscriptionOut"))]),
    op!("PATCH", v1!("/csourceSubscriptions/{id}"), "Context sources", "Update a registration subscription", &["local"], Some("Object"), NONE),
    op!("DELETE", v1!("/csourceSubscriptions/{id}"), "Context sources", "Delete a registration subscription", &["local"], None, NONE),
    // The hub itself.
    op!("GET", "/health", "Operations", "Alive", &[], None, OBJECT),
    op!("GET", "/ready", "Operations", "Ready to serve: the store answers a read (503 while stopping)", &[], None, OBJECT),
    op!("GET", "/metrics", "Operations", "Prometheus metrics (default-tenant admins, or Bearer --metrics-token)", &[], None, &[("200", Some("Text"))]),
    op!("GET", "/openapi.json", "Operations", "This document", &[], None, OBJECT),
    op!("GET", "/auth/whoami", "Access", "Who the hub takes the caller for", &[], None, OBJECT),
    op!("GET", "/cityhub/v1/keys", "Access", "List the API keys the caller administers (never a key itself)", &[], None, LIST),
    op!("POST", "/cityhub/v1/keys", "Access", "Issue an API key of the tenant (or, allTenants, of every tenant); the answer shows the key once", &[], Some("Object"), &[("201", Some("Object"))]),
    op!("GET", "/cityhub/v1/keys/{id}", "Access", "One API key's record", &[], None, OBJECT),
    op!("DELETE", "/cityhub/v1/keys/{id}", "Access", "Revoke an API key (its record stays, with the time)", &[], None, OBJECT),
    op!("GET", "/cityhub/v1/policies", "Access", "List the tenant's access policies", &[], None, LIST),
    op!("POST", "/cityhub/v1/policies", "Access", "Create an access policy", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/policies/{id}", "Access", "Retrieve an access policy", &[], None, OBJECT),
    op!("PUT", "/cityhub/v1/policies/{id}", "Access", "Replace an access policy", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    op!("DELETE", "/cityhub/v1/policies/{id}", "Access", "Delete an access policy", &[], None, NONE),
    op!("GET", "/cityhub/v1/audit", "Access", "Read the audit log (newest first)", AUDIT_QUERY, None, LIST),
    op!("GET", "/", "UI", "The browser UI", &[], None, &[("200", None)]),
    op!("GET", "/ui/config.json", "UI", "The UI's settings", &[], None, OBJECT),
    op!("GET", "/ui/{path}", "UI", "The UI's files", &[], None, &[("200", None)]),
    op!("GET", "/cityhub/v1/live", "UI", "The tenant's changes as Server-Sent Events", &["type"], None, &[("200", None)]),
    op!("GET", "/cityhub/v1/tenants", "UI", "Tenants the caller may see", &[], None, ANY),
    op!("GET", "/cityhub/v1/dashboards", "UI", "List dashboards", &[], None, LIST),
    op!("POST", "/cityhub/v1/dashboards", "UI", "Create a dashboard", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/dashboards/{id}", "UI", "Retrieve a dashboard", &[], None, OBJECT),
    op!("PUT", "/cityhub/v1/dashboards/{id}", "UI", "Replace a dashboard", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    op!("DELETE", "/cityhub/v1/dashboards/{id}", "UI", "Delete a dashboard", &[], None, NONE),
    op!("GET", "/cityhub/v1/shared/{token}", "UI", "A dashboard shared read-only", &[], None, OBJECT),
    // Device ingestion (IoT Agent API).
    op!("POST", "/iot/services", "Ingestion", "Provision service groups", &[], Some("Object"), CREATED),
    op!("GET", "/iot/services", "Ingestion", "List service groups", &["limit", "offset", "apikey", "resource"], None, OBJECT),
    op!("PUT", "/iot/services", "Ingestion", "Update a service group", &["apikey", "resource"], Some("Object"), NONE),
    op!("DELETE", "/iot/services", "Ingestion", "Delete a service group", &["apikey", "resource", "device"], None, NONE),
    op!("POST", "/iot/devices", "Ingestion", "Provision devices", &[], Some("Object"), CREATED),
    op!("GET", "/iot/devices", "Ingestion", "List devices", &["limit", "offset", "detailed", "protocol"], None, OBJECT),
    op!("GET", "/iot/devices/{id}", "Ingestion", "Retrieve a device", &[], None, OBJECT),
    op!("PUT", "/iot/devices/{id}", "Ingestion", "Update a device", &[], Some("Object"), NONE),
    op!("DELETE", "/iot/devices/{id}", "Ingestion", "Delete a device", &[], None, NONE),
    op!("POST", "/iot/json", "Ingestion", "A device's measures (JSON)", &["k", "i", "t", "getCmd"], Some("Object"), &[("200", None), ("204", None)]),
    op!("POST", "/iot/d", "Ingestion", "A device's measures (UltraLight 2.0)", &["k", "i", "t", "getCmd"], Some("Text"), &[("200", None), ("204", None)]),
    op!("GET", "/cityhub/v1/ingest/status", "Ingestion", "Ingestion counters", &["kind", "name"], None, OBJECT),
    op!("GET", "/cityhub/v1/ingest/dead-letters", "Ingestion", "Measures that could not be stored", &[], None, ANY),
    op!("POST", "/cityhub/v1/ngsiv2/notify", "Ingestion", "An NGSIv2 notification (an Orion feeding the hub)", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    // Open-data pollers.
    op!("GET", "/cityhub/v1/pollers", "Pollers", "List pollers", &[], None, LIST),
    op!("POST", "/cityhub/v1/pollers", "Pollers", "Create a poller", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/pollers/{id}", "Pollers", "Retrieve a poller", &[], None, OBJECT),
    op!("PUT", "/cityhub/v1/pollers/{id}", "Pollers", "Replace a poller", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    op!("DELETE", "/cityhub/v1/pollers/{id}", "Pollers", "Delete a poller", &[], None, NONE),
    // The catalogue.
    op!("GET", "/catalog", "Catalogue", "The DCAT-AP catalogue (Turtle or JSON-LD)", &[], None, &[("200", None)]),
    op!("GET", "/api/3/action/{action}", "CKAN", "A CKAN API action", CKAN_QUERY, None, &[("200", Some("CkanOk"))], Errors::Ckan),
    op!("POST", "/api/3/action/{action}", "CKAN", "A CKAN API action (POST)", CKAN_QUERY, Some("Object"), &[("200", Some("CkanOk"))], Errors::Ckan),
    op!("GET", "/api/action/{action}", "CKAN", "A CKAN API action", CKAN_QUERY, None, &[("200", Some("CkanOk"))], Errors::Ckan),
    op!("POST", "/api/action/{action}", "CKAN", "A CKAN API action (POST)", CKAN_QUERY, Some("Object"), &[("200", Some("CkanOk"))], Errors::Ckan),
    op!("GET", "/cityhub/v1/models", "Catalogue", "List data models", &[], None, LIST),
    op!("POST", "/cityhub/v1/models", "Catalogue", "Add a data model", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/models/{type}", "Catalogue", "Retrieve a data model", &[], None, OBJECT),
    op!("PUT", "/cityhub/v1/models/{type}", "Catalogue", "Replace a data model", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    op!("DELETE", "/cityhub/v1/models/{type}", "Catalogue", "Delete a data model", &[], None, NONE),
    op!("GET", "/cityhub/v1/datasets", "Catalogue", "List datasets", &[], None, LIST),
    op!("POST", "/cityhub/v1/datasets", "Catalogue", "Publish a dataset", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/datasets/{name}", "Catalogue", "Retrieve a dataset", &[], None, OBJECT),
    op!("PUT", "/cityhub/v1/datasets/{name}", "Catalogue", "Replace a dataset", &[], Some("Object"), &[("200", Some("Any")), ("204", None)]),
    op!("DELETE", "/cityhub/v1/datasets/{name}", "Catalogue", "Delete a dataset", &[], None, NONE),
    op!("GET", "/cityhub/v1/datasets/{name}/download", "Catalogue", "Download a dataset's data", &["format", "part"], None, &[("200", None)]),
    op!("GET", "/cityhub/v1/access-requests", "Catalogue", "List access requests (the caller's own; admins see the tenant's)", &[], None, LIST),
    op!("POST", "/cityhub/v1/access-requests", "Catalogue", "Ask for access to a dataset", &[], Some("Object"), CREATED),
    op!("GET", "/cityhub/v1/access-requests/{id}", "Catalogue", "Retrieve an access request", &[], None, OBJECT),
    op!("POST", "/cityhub/v1/access-requests/{id}/approve", "Catalogue", "Approve: issue a key limited to the dataset (shown once)", &[], Some("Object"), OBJECT),
    op!("POST", "/cityhub/v1/access-requests/{id}/refuse", "Catalogue", "Refuse an access request", &[], Some("Object"), OBJECT),
    op!("POST", "/cityhub/v1/access-requests/{id}/revoke", "Catalogue", "Revoke an approved request's key", &[], None, OBJECT),
    op!("GET", "/cityhub/v1/access-requests/{id}/usage", "Catalogue", "Usage of an approved request's key", &[], None, OBJECT),
    // The tamper-evident history (cityhub-transparency, docs/ledger.md).
    op!("GET", "/ledger/key", "Ledger", "The hub's signed-note verifier key", &[], None, &[("200", Some("Text"))]),
    op!("GET", "/ledger/checkpoint", "Ledger", "The tenant's signed checkpoint (C2SP signed note)", &[], None, &[("200", Some("Text"))]),
    op!("GET", "/ledger/proof/inclusion", "Ledger", "Inclusion proof of a leaf (by index or instanceId) in a tree size", &["leaf", "instance", "size"], None, OBJECT),
    op!("GET", "/ledger/proof/consistency", "Ledger", "Consistency proof between two tree sizes", &["from", "to"], None, OBJECT),
    op!("GET", "/ledger/leaves", "Ledger", "The tenant's leaves as NDJSON (admins)", &["from", "limit"], None, &[("200", None)]),
    op!("GET", "/ledger/witnessed", "Ledger", "The checkpoint of a peer this hub co-signed", &["origin"], None, &[("200", Some("Text"))]),
    op!("GET", "/ledger/witness/refusals", "Ledger", "Checkpoints this hub refused to co-sign", &[], None, LIST),
];

/// The type of a query parameter by its name.
pub fn parameter(name: &str) -> (Value, &'static str) {
    let string = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    let boolean = json!({"type": "boolean"});
    match name {
        "limit" | "offset" | "lastN" | "joinLevel" | "rows" | "start" | "facet.limit" | "leaf" | "size" | "from"
        | "to" => (count, "a non-negative integer"),
        "count" | "local" | "deleteAll" | "details" | "reload" | "expandValues" => (boolean, "true or false"),
        "geometry" => (
            json!({"type": "string", "enum": ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]}),
            "the GeoJSON geometry type of coordinates",
        ),
        "format" => (string, "normalized, concise, keyValues (simplified), or a download format"),
        "options" => (string, "comma-separated: keyValues, concise, normalized, sysAttrs, ..."),
        "join" => (json!({"type": "string", "enum": ["flat", "inline", "@none"]}), "how linked entities are included"),
        "timerel" => (json!({"type": "string", "enum": ["before", "after", "between"]}), "the temporal relation"),
        "timeAt" | "endTimeAt" | "since" | "until" => (json!({"type": "string", "format": "date-time"}), "a DateTime"),
        "q" | "scopeQ" | "csf" => (string, "an NGSI-LD query expression (clause 4.9)"),
        "id" | "type" | "attrs" | "pick" | "omit" => (string, "a comma-separated list"),
        _ => (string, "a string"),
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let item = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        item[op.method.to_ascii_lowercase()] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "cityhub",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "An NGSI-LD (ETSI GS CIM 009) smart-city data hub",
            "description": "Every route the hub serves. The NGSI-LD API is under /ngsi-ld/v1; errors are NGSI-LD ProblemDetails (Table 5.5.2-1), except under the CKAN API, which answers CKAN's error envelope.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": "/"}],
        "tags": tags(),
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
            }
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}]
    })
}

fn tags() -> Value {
    let mut seen: Vec<&str> = Vec::new();
    for op in OPERATIONS {
        if !seen.contains(&op.tag) {
            seen.push(op.tag);
        }
    }
    Value::Array(seen.into_iter().map(|t| json!({"name": t})).collect())
}

fn operation_id(op: &Operation) -> String {
    let mut id = op.method.to_ascii_lowercase();
    for part in op.path.split(['/', '.', '-']).filter(|p| !p.is_empty()) {
        let part = part.trim_start_matches('{').trim_end_matches('}');
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

fn operation(op: &Operation) -> Value {
    let ngsi = op.path.starts_with(NGSI);
    let mut parameters: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect();
    parameters.extend(op.query.iter().map(|name| json!({"$ref": format!("#/components/parameters/q.{name}")})));
    if ngsi {
        parameters.push(json!({"$ref": "#/components/parameters/h.NGSILD-Tenant"}));
    }
    let mut responses = Map::new();
    let media: &[&str] = if ngsi { &["application/json", "application/ld+json"] } else { &["application/json"] };
    for (status, schema) in op.ok {
        let mut response = json!({"description": describe(status)});
        if let Some(schema) = schema {
            let media: &[&str] = if *schema == "Text" { &["text/plain"] } else { media };
            let content: Map<String, Value> = media
                .iter()
                .map(|m| ((*m).to_owned(), json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}})))
                .collect();
            response["content"] = Value::Object(content);
        }
        responses.insert((*status).to_owned(), response);
    }
    let error = match op.errors {
        Errors::Problem => "ProblemDetails",
        Errors::Ckan => "CkanErrorOrProblem",
    };
    responses.insert(
        "default".to_owned(),
        json!({
            "description": "An error",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{error}")}}}
        }),
    );
    let mut out = json!({
        "operationId": operation_id(op),
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(body) = op.body {
        let media: &[&str] = match body {
            "Text" => &["text/plain"],
            _ if ngsi => &["application/json", "application/ld+json"],
            _ => &["application/json"],
        };
        let content: Map<String, Value> = media
            .iter()
            .map(|m| ((*m).to_owned(), json!({"schema": {"$ref": format!("#/components/schemas/{body}")}})))
            .collect();
        out["requestBody"] = json!({"required": true, "content": content});
    }
    out
}

fn describe(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "No content",
        "207" => "Partly done: what succeeded and what did not",
        _ => "Done",
    }
}

fn parameters() -> Value {
    let mut out = Map::new();
    let mut names: Vec<&str> = OPERATIONS.iter().flat_map(|op| op.query.iter().copied()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let (schema, description) = parameter(name);
        out.insert(
            format!("q.{name}"),
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema}),
        );
    }
    out.insert(
        "h.NGSILD-Tenant".to_owned(),
        json!({
            "name": "NGSILD-Tenant", "in": "header", "required": false,
            "description": "The tenant (clause 4.14); the default tenant without it",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
        }),
    );
    Value::Object(out)
}

fn schemas() -> Value {
    json!({
        "ProblemDetails": {
            "type": "object",
            "description": "An NGSI-LD error (IETF RFC 9457; types of ETSI GS CIM 009 Table 5.5.2-1)",
            "required": ["type", "title"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string"}
            }
        },
        "CkanError": {
            "type": "object",
            "required": ["success", "error"],
            "properties": {"success": {"const": false}, "help": {"type": "string"}, "error": {"type": "object"}}
        },
        "CkanErrorOrProblem": {
            "description": "CKAN's envelope for an action's own errors; a ProblemDetails for what the hub refuses before the action runs (access, an unknown query parameter)",
            "anyOf": [{"$ref": "#/components/schemas/CkanError"}, {"$ref": "#/components/schemas/ProblemDetails"}]
        },
        "CkanOk": {
            "type": "object",
            "required": ["success", "result"],
            "properties": {"success": {"const": true}, "help": {"type": "string"}, "result": {}}
        },
        "Any": {},
        "Object": {"type": "object"},
        "List": {"type": "array"},
        "Text": {"type": "string"},
        "Types": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "Attribute": {
            "type": "object",
            "description": "A Property, Relationship, GeoProperty, LanguageProperty, VocabProperty, JsonProperty or ListProperty (or an array of them, one per datasetId)",
            "properties": {
                "type": {"type": "string", "enum": ["Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty", "JsonProperty", "ListProperty", "ListRelationship"]},
                "value": {},
                "object": {},
                "languageMap": {"type": "object"},
                "vocab": {},
                "json": {},
                "observedAt": {"type": "string", "format": "date-time"},
                "unitCode": {"type": "string"},
                "datasetId": {"type": "string"}
            }
        },
        "Entity": {
            "type": "object",
            "description": "An entity as answered (normalized, concise or keyValues; pick may leave id and type out)",
            "properties": {
                "id": {"type": "string"},
                "type": {"$ref": "#/components/schemas/Types"},
                "scope": {},
                "location": {},
                "@context": {}
            }
        },
        "EntityIn": {
            "type": "object",
            "description": "An entity to create",
            "required": ["id", "type"],
            "properties": {
                "id": {"type": "string", "format": "uri"},
                "type": {"$ref": "#/components/schemas/Types"},
                "scope": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
            },
            "additionalProperties": {"$ref": "#/components/schemas/Attribute"}
        },
        "EntityFragment": {
            "type": "object",
            "description": "Attributes of an entity (id and type optional)",
            "additionalProperties": {}
        },
        "EntityArray": {"type": "array", "items": {"$ref": "#/components/schemas/EntityIn"}},
        "IdArray": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "EntityList": {
            "description": "Entities (an array), or a GeoJSON FeatureCollection with format geojson",
            "oneOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/Entity"}},
                {"type": "object", "required": ["type", "features"], "properties": {"type": {"const": "FeatureCollection"}, "features": {"type": "array"}}}
            ]
        },
        "Query": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": "Query"},
                "entities": {"type": "array", "items": {"type": "object"}},
                "attrs": {"type": "array", "items": {"type": "string"}},
                "q": {"type": "string"},
                "geoQ": {"type": "object"},
                "temporalQ": {"type": "object"},
                "scopeQ": {"type": "string"},
                "lang": {"type": "string"}
            }
        },
        "BatchIds": {"type": "array", "items": {"type": "string"}},
        "BatchOperationResult": {
            "type": "object",
            "properties": {
                "success": {"type": "array", "items": {"type": "string"}},
                "errors": {"type": "array", "items": {
                    "type": "object",
                    "required": ["entityId", "error"],
                    "properties": {"entityId": {"type": "string"}, "error": {"$ref": "#/components/schemas/ProblemDetails"}}
                }}
            }
        },
        "UpdateResult": {
            "type": "object",
            "properties": {
                "updated": {"type": "array", "items": {"type": "string"}},
                "notUpdated": {"type": "array", "items": {"type": "object", "properties": {"attributeName": {"type": "string"}, "reason": {"type": "string"}}}}
            }
        },
        "Subscription": {
            "type": "object",
            "description": "A subscription to create (clause 5.2.12)",
            "required": ["type", "notification"],
            "properties": {
                "id": {"type": "string", "format": "uri"},
                "type": {"const": "Subscription"},
                "entities": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}, "idPattern": {"type": "string"}}}},
                "watchedAttributes": {"type": "array", "items": {"type": "string"}},
                "q": {"type": "string"},
                "notification": {
                    "type": "object",
                    "required": ["endpoint"],
                    "properties": {
                        "attributes": {"type": "array", "items": {"type": "string"}},
                        "format": {"type": "string"},
                        "endpoint": {"type": "object", "required": ["uri"], "properties": {"uri": {"type": "string", "format": "uri"}, "accept": {"type": "string"}}}
                    }
                },
                "expiresAt": {"type": "string", "format": "date-time"},
                "throttling": {"type": "number", "minimum": 0},
                "timeInterval": {"type": "number", "minimum": 0}
            }
        },
        "SubscriptionOut": {
            "type": "object",
            "required": ["id", "type"],
            "properties": {"id": {"type": "string"}, "type": {"const": "Subscription"}, "notification": {"type": "object"}, "status": {"type": "string"}}
        },
        "SubscriptionList": {"type": "array", "items": {"$ref": "#/components/schemas/SubscriptionOut"}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_once_with_its_path_parameters() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for op in OPERATIONS {
            assert!(seen.insert((op.method, op.path)), "{} {} is in the table twice", op.method, op.path);
            let documented = &doc["paths"][op.path][op.method.to_ascii_lowercase()];
            let params = documented["parameters"].as_array().unwrap();
            for name in op.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
                assert!(
                    params.iter().any(|p| p["name"] == name && p["in"] == "path"),
                    "{} {} lacks {name}",
                    op.method,
                    op.path
                );
            }
            assert!(
                documented["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{} {} has no error answer",
                op.method,
                op.path
            );
        }
        let ids: std::collections::BTreeSet<String> = OPERATIONS.iter().map(operation_id).collect();
        assert_eq!(ids.len(), OPERATIONS.len(), "operationIds must be unique");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut refs = Vec::new();
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&doc, &mut refs);
        assert!(refs.len() > 100, "{} refs", refs.len());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }
}
