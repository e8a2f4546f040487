//! Access requests (pure): a company asks for a dataset with a purpose; an admin of the tenant
//! approves (an API key limited to that dataset, with an expiry and a rate) or refuses; a grant
//! may be revoked. What is read from a client, the states a request goes through, the policy a
//! grant is enforced by, who may download a dataset by its access level, and the usage counted
//! per dataset and consumer.
//!
//! **How a grant narrows its key.** The key is issued with the `public` role in the dataset's
//! tenant (it may read nothing by its role), and the grant is an allow policy for the key's id
//! as subject ([`grant_policy`]): the dataset's entity types, its `q` and its attributes. So the
//! one access decision (`cityhub_access::decide`) opens to that key, through the NGSI-LD API,
//! exactly the entities of the dataset's selection, and downloads of that dataset are open to it
//! by [`may_download`]; nothing else is. A dataset that selects by area cannot be granted (a
//! policy has no area): its approval is refused, saying so.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use cityhub_access::{Identity, Role, Via};
use ngsild_core::error::ErrorKind;
use ngsild_core::NgsiLdError;

use crate::dataset::{AccessLevel, Contact, Dataset};

/// The longest purpose kept.
pub const MAX_PURPOSE: usize = 4000;
/// The highest rate a grant may give its key, requests per second.
pub const MAX_RATE: f64 = 10_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Refused,
    Revoked,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Refused => "refused",
            Status::Revoked => "revoked",
        }
    }
}

/// One request as stored (`RecordKind::AccessRequest`, in the dataset's tenant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequest {
    pub id: String,
    pub dataset: String,
    pub purpose: String,
    pub contact: Contact,
    /// Who asked: the key's id or the token's subject.
    pub requester: String,
    pub status: Status,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The key issued on approval (its id; the key itself is shown once and never kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

fn bad(detail: impl Into<String>) -> NgsiLdError {
    NgsiLdError::bad_request(detail)
}

fn object<'a>(body: &'a Value, what: &str, fields: &[&str]) -> Result<&'a Map<String, Value>, NgsiLdError> {
    let map = body.as_object().ok_or_else(|| bad(format!("{what} is a JSON object with {}", fields.join(", "))))?;
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad(format!("'{unknown}' is not a field of {what}: the fields are {}", fields.join(", "))));
    }
    Ok(map)
}

fn text<'a>(map: &'a Map<String, Value>, field: &str, what: &str) -> Result<&'a str, NgsiLdError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        Some(_) => Err(bad(format!("{what}'s {field} must be a non-empty string"))),
        None => Err(bad(format!("{what} needs {field}"))),
    }
}

/// Who asks, or why the caller may not: an access request needs an identity (a key or a
/// token), except from an admin (open mode has no identities).
pub fn requester(caller: &Identity, tenant: &str) -> Result<String, NgsiLdError> {
    match (&caller.subject, caller.via) {
        (Some(subject), Via::Key | Via::Token) => Ok(subject.clone()),
        _ if caller.role_in(tenant) == Role::Admin => Ok("admin".to_owned()),
        _ => Err(NgsiLdError::new(
            ErrorKind::Forbidden,
            "an access request needs an identity: send the API key the city issued to your company (X-API-Key) \
             or a bearer JWT of the city's sign-in, then ask again",
        )),
    }
}

impl AccessRequest {
    /// A new request read from a client's body `{dataset, purpose, contact: {name, email?, url?}}`.
    /// `datasets`: the tenant's, the one named must be among them.
    pub fn read(
        body: &Value,
        id: String,
        requester: String,
        datasets: &[Dataset],
        now: &str,
    ) -> Result<AccessRequest, NgsiLdError> {
        let what = "an access request";
        let map = object(body, what, &["dataset", "purpose", "contact"])?;
        let dataset = text(map, "dataset", what)?;
        let Some(d) = datasets.iter().find(|d| d.name == dataset) else {
            return Err(bad(format!(
                "there is no dataset named {dataset:?} in this tenant: name one of GET /cityhub/v1/datasets"
            )));
        };
        if d.access_level == AccessLevel::Public {
            return Err(bad(format!(
                "dataset {dataset:?} is public: download it without asking (GET /cityhub/v1/datasets/{dataset}/download)"
            )));
        }
        let purpose = text(map, "purpose", what)?;
        if purpose.chars().count() > MAX_PURPOSE {
            return Err(bad(format!("the purpose is longer than {MAX_PURPOSE} characters: say it shorter")));
        }
        let contact = match map.get("contact") {
            None => return Err(bad("an access request needs contact: {\"name\": ..., \"email\": ...}")),
            Some(v) => {
                let c = object(v, "contact", &["name", "email", "url"])?;
                let name = text(c, "name", "contact")?.to_owned();
                let email = match c.get("email") {
                    None => None,
                    Some(Value::String(e)) if e.contains('@') && !e.chars().any(char::is_whitespace) => Some(e.clone()),
                    Some(_) => return Err(bad("contact's email must be an e-mail address (name@example.com)")),
                };
                let url = match c.get("url") {
                    None => None,
                    Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => Some(u.clone()),
                    Some(_) => return Err(bad("contact's url must be an http(s) URL")),
                };
                Contact { name, email, url }
            }
        };
        Ok(AccessRequest {
            id,
            dataset: dataset.to_owned(),
            purpose: purpose.to_owned(),
            contact,
            requester,
            status: Status::Pending,
            created_at: now.to_owned(),
            decided_at: None,
            decided_by: None,
            reason: None,
            key_id: None,
            expires_at: None,
            rate_limit: None,
            revoked_at: None,
        })
    }

    /// Whether `caller` may see this request: its requester, or an admin of the tenant.
    pub fn shown_to(&self, caller: &Identity, tenant: &str) -> bool {
        caller.role_in(tenant) == Role::Admin || caller.subject.as_deref() == Some(self.requester.as_str())
    }

    fn must_be(&self, status: Status, to: &str) -> Result<(), NgsiLdError> {
        if self.status == status {
            return Ok(());
        }
        Err(NgsiLdError::new(
            ErrorKind::Conflict,
            format!(
                "access request {} is {}: only a {} request can be {to}",
                self.id,
                self.status.name(),
                status.name()
            ),
        ))
    }

    /// Approved, with the key issued for it.
    pub fn approve(&mut self, approval: &Approval, key_id: String, by: &str, now: &str) -> Result<(), NgsiLdError> {
        self.must_be(Status::Pending, "approved")?;
        self.status = Status::Approved;
        self.key_id = Some(key_id);
        self.expires_at = Some(approval.expires_at.clone());
        self.rate_limit = Some(approval.rate_limit);
        self.decided_at = Some(now.to_owned());
        self.decided_by = Some(by.to_owned());
        Ok(())
    }

    pub fn can_approve(&self) -> Result<(), NgsiLdError> {
        self.must_be(Status::Pending, "approved")
    }

    pub fn refuse(&mut self, reason: String, by: &str, now: &str) -> Result<(), NgsiLdError> {
        self.must_be(Status::Pending, "refused")?;
        self.status = Status::Refused;
        self.reason = Some(reason);
        self.decided_at = Some(now.to_owned());
        self.decided_by = Some(by.to_owned());
        Ok(())
    }

    pub fn revoke(&mut self, now: &str) -> Result<(), NgsiLdError> {
        self.must_be(Status::Approved, "revoked")?;
        self.status = Status::Revoked;
        self.revoked_at = Some(now.to_owned());
        Ok(())
    }

    /// Whether this request grants `subject` the dataset `name` at `now` (approved, its key,
    /// not expired).
    pub fn grants(&self, subject: &str, name: &str, now: &str) -> bool {
        self.status == Status::Approved
            && self.dataset == name
            && self.key_id.as_deref() == Some(subject)
            && self.expires_at.as_deref().is_none_or(|e| later(e, now))
    }

    /// The id of the policy that enforces this request's grant.
    pub fn policy_id(&self) -> String {
        format!("urn:cityhub:policy:access-request:{}", self.id)
    }
}

/// Whether RFC 3339 time `a` is after `b` (false when either does not read).
fn later(a: &str, b: &str) -> bool {
    match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// An admin's approval: `{expiresAt, rateLimit}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// RFC 3339, UTC.
    pub expires_at: String,
    pub expires: chrono::DateTime<chrono::Utc>,
    /// Requests per second.
    pub rate_limit: f64,
}

impl Approval {
    pub fn read(body: &Value, now: chrono::DateTime<chrono::Utc>) -> Result<Approval, NgsiLdError> {
        let what = "an approval";
        let map = object(body, what, &["expiresAt", "rateLimit"])?;
        let expires = text(map, "expiresAt", what)?;
        let expires = chrono::DateTime::parse_from_rfc3339(expires)
            .map_err(|e| bad(format!("expiresAt {expires:?} is not an RFC 3339 time (2027-12-31T00:00:00Z): {e}")))?
            .with_timezone(&chrono::Utc);
        if expires <= now {
            return Err(bad(format!("expiresAt {} is past: give a time after now", expires.to_rfc3339())));
        }
        let rate_limit = match map.get("rateLimit") {
            Some(v) => v.as_f64().ok_or_else(|| bad("rateLimit must be a number of requests per second"))?,
            None => return Err(bad("an approval needs rateLimit: the requests per second the key may send")),
        };
        if !(rate_limit > 0.0 && rate_limit <= MAX_RATE) {
            return Err(bad(format!(
                "rateLimit {rate_limit} is out of range: give more than 0 and at most {MAX_RATE}"
            )));
        }
        Ok(Approval { expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), expires, rate_limit })
    }
}

/// An admin's refusal: `{reason}`.
pub fn read_refusal(body: &Value) -> Result<String, NgsiLdError> {
    let map = object(body, "a refusal", &["reason"])?;
    Ok(text(map, "reason", "a refusal")?.to_owned())
}

/// The allow policy (a `cityhub_access::Policy` document, names expanded with `expand`) that
/// opens the dataset's selection to the key `key_id`, or why the dataset cannot be granted.
pub fn grant_policy(
    request: &AccessRequest,
    dataset: &Dataset,
    key_id: &str,
    expand_type: &dyn Fn(&str) -> String,
    expand_attr: &dyn Fn(&str) -> Result<String, NgsiLdError>,
) -> Result<Value, NgsiLdError> {
    let s = &dataset.selection;
    if s.geo.is_some() {
        return Err(NgsiLdError::new(
            ErrorKind::OperationNotSupported,
            format!(
                "dataset {:?} selects by area, which a grant cannot narrow the NGSI-LD API to: publish the dataset \
                 without an area (or by a q) to grant it",
                dataset.name
            ),
        ));
    }
    let mut doc = json!({
        "id": request.policy_id(),
        "subject": key_id,
        "effect": "allow",
        "entityTypes": s.types.iter().map(|t| expand_type(t)).collect::<Vec<_>>(),
    });
    if let Some(q) = &s.q {
        doc["q"] = json!(q);
    }
    if !s.attrs.is_empty() {
        doc["attributes"] = json!(s.attrs.iter().map(|a| expand_attr(a)).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(doc)
}

/// Who a caller is as a consumer whose usage is counted: a key's id or a token's subject.
pub fn consumer(caller: &Identity) -> Option<String> {
    caller.subject.clone().filter(|_| caller.via != Via::Anonymous)
}

/// Whether `caller` may download `dataset` of `tenant`, by its access level: public to anyone;
/// registered to any identity (a key or a token) and the tenant's readers; on approval
/// (restricted) to the tenant's readers and to a key an approved request granted it. Answers
/// the request whose grant is used, or a 403 saying how to get access.
pub fn may_download<'a>(
    dataset: &Dataset,
    caller: &Identity,
    tenant: &str,
    requests: &'a [AccessRequest],
    now: &str,
) -> Result<Option<&'a AccessRequest>, NgsiLdError> {
    let subject = caller.subject.as_deref().filter(|_| caller.via != Via::Anonymous);
    let granted = subject.and_then(|s| requests.iter().find(|r| r.grants(s, &dataset.name, now)));
    let staff = caller.role_in(tenant) >= Role::Reader;
    let open = match dataset.access_level {
        AccessLevel::Public => true,
        AccessLevel::Registered => staff || subject.is_some(),
        AccessLevel::OnApproval => staff || granted.is_some(),
    };
    if open {
        return Ok(granted);
    }
    let name = &dataset.name;
    let detail = match dataset.access_level {
        AccessLevel::Registered => format!(
            "dataset {name:?} is for registered users: send the API key the city issued to your company (X-API-Key) \
             or a bearer JWT"
        ),
        _ => format!(
            "dataset {name:?} is restricted: request access with POST /cityhub/v1/access-requests \
             {{\"dataset\": \"{name}\", \"purpose\": ..., \"contact\": ...}} and download with the key its approval issues"
        ),
    };
    Err(NgsiLdError::new(ErrorKind::Forbidden, detail))
}

/// What a consumer took of a dataset (`RecordKind::AccessUsage`, id [`Usage::key`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub dataset: String,
    /// The key's id or the token's subject.
    pub consumer: String,
    /// Downloads started.
    pub requests: u64,
    /// Rows (entities, or history instances) and bytes downloaded.
    pub rows: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
}

impl Usage {
    pub fn key(dataset: &str, consumer: &str) -> String {
        format!("{dataset}/{consumer}")
    }

    /// One download more, of `rows` rows and `bytes` bytes, at `now`.
    pub fn add(&mut self, rows: u64, bytes: u64, now: &str) {
        self.requests += 1;
        self.rows += rows;
        self.bytes += bytes;
        self.last_at = Some(now.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_access::Grant;

    fn dataset(level: &str) -> Dataset {
        let mut body = crate::dataset::tests::sample();
        body["accessLevel"] = json!(level);
        Dataset::read(&body, "2026-01-01T00:00:00Z").unwrap()
    }

    fn key(id: &str, tenant: &str, role: Role) -> Identity {
        Identity { subject: Some(id.into()), via: Via::Key, grants: vec![Grant { tenant: Some(tenant.into()), role }] }
    }

    fn request(d: &Dataset) -> AccessRequest {
        let body =
            json!({"dataset": d.name, "purpose": "a bus app", "contact": {"name": "Kim", "email": "kim@bus.example"}});
        AccessRequest::read(&body, "ar-1".into(), "key-co".into(), std::slice::from_ref(d), "2026-01-01T00:00:00Z")
            .unwrap()
    }

    #[test]
    fn a_bad_request_says_what_to_change() {
        let d = dataset("restricted");
        let cases = [
            (json!([]), "JSON object"),
            (json!({"dataset": "nope", "purpose": "p", "contact": {"name": "n"}}), "no dataset named"),
            (json!({"dataset": d.name, "purpose": "", "contact": {"name": "n"}}), "purpose"),
            (json!({"dataset": d.name, "purpose": "p"}), "needs contact"),
            (json!({"dataset": d.name, "purpose": "p", "contact": "kim"}), "contact is a JSON object"),
            (json!({"dataset": d.name, "purpose": "p", "contact": {"name": "n", "email": "x"}}), "e-mail"),
            (json!({"dataset": d.name, "purpose": "p", "contact": {"name": "n"}, "colour": 1}), "'colour'"),
        ];
        for (body, says) in cases {
            let e = AccessRequest::read(&body, "ar".into(), "k".into(), std::slice::from_ref(&d), "t").unwrap_err();
            assert!(e.detail.contains(says), "{body}: {}", e.detail);
        }
        let public = dataset("public");
        let body = json!({"dataset": public.name, "purpose": "p", "contact": {"name": "n"}});
        let e = AccessRequest::read(&body, "ar".into(), "k".into(), &[public], "t").unwrap_err();
        assert!(e.detail.contains("is public"), "{}", e.detail);
    }

    #[test]
    fn a_request_goes_pending_approved_revoked_and_grants_only_while_approved_and_unexpired() {
        let d = dataset("restricted");
        let mut r = request(&d);
        assert!(!r.grants("key-1", &d.name, "2026-01-02T00:00:00Z"));
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let approval = Approval::read(&json!({"expiresAt": "2026-02-01T00:00:00Z", "rateLimit": 5}), now).unwrap();
        r.approve(&approval, "key-1".into(), "admin", "2026-01-01T00:00:00Z").unwrap();
        assert!(r.grants("key-1", &d.name, "2026-01-02T00:00:00Z"));
        assert!(!r.grants("key-1", "other", "2026-01-02T00:00:00Z"));
        assert!(!r.grants("key-2", &d.name, "2026-01-02T00:00:00Z"));
        assert!(!r.grants("key-1", &d.name, "2026-02-02T00:00:00Z"), "expired");
        let again = r.refuse("no".into(), "admin", "t").unwrap_err();
        assert_eq!(again.kind, ErrorKind::Conflict);
        assert!(again.detail.contains("is approved"), "{}", again.detail);
        r.revoke("2026-01-03T00:00:00Z").unwrap();
        assert!(!r.grants("key-1", &d.name, "2026-01-04T00:00:00Z"));
        assert!(r.revoke("t").is_err());
    }

    #[test]
    fn approvals_need_a_future_expiry_and_a_rate() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        for (body, says) in [
            (json!({"rateLimit": 1}), "needs expiresAt"),
            (json!({"expiresAt": "soon", "rateLimit": 1}), "RFC 3339"),
            (json!({"expiresAt": "2025-01-01T00:00:00Z", "rateLimit": 1}), "past"),
            (json!({"expiresAt": "2027-01-01T00:00:00Z"}), "needs rateLimit"),
            (json!({"expiresAt": "2027-01-01T00:00:00Z", "rateLimit": 0}), "out of range"),
            (json!({"expiresAt": "2027-01-01T00:00:00Z", "rateLimit": 1, "x": 1}), "'x'"),
        ] {
            let e = Approval::read(&body, now).unwrap_err();
            assert!(e.detail.contains(says), "{body}: {}", e.detail);
        }
        assert!(read_refusal(&json!({})).unwrap_err().detail.contains("reason"));
    }

    #[test]
    fn downloads_follow_the_access_level() {
        let now = "2026-01-02T00:00:00Z";
        let public = dataset("public");
        assert!(may_download(&public, &Identity::anonymous(), "t", &[], now).is_ok());
        let registered = dataset("registered");
        let e = may_download(&registered, &Identity::anonymous(), "t", &[], now).unwrap_err();
        assert!(e.detail.contains("registered"), "{}", e.detail);
        assert!(may_download(&registered, &key("key-co", "t", Role::Public), "t", &[], now).is_ok());
        let restricted = dataset("restricted");
        let company = key("key-1", "t", Role::Public);
        let e = may_download(&restricted, &company, "t", &[], now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(
            e.detail.contains("request access") && e.detail.contains("/cityhub/v1/access-requests"),
            "{}",
            e.detail
        );
        assert!(may_download(&restricted, &key("key-r", "t", Role::Reader), "t", &[], now).unwrap().is_none());
        let mut r = request(&restricted);
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let approval = Approval::read(&json!({"expiresAt": "2026-02-01T00:00:00Z", "rateLimit": 5}), at).unwrap();
        r.approve(&approval, "key-1".into(), "admin", "t").unwrap();
        let used = may_download(&restricted, &company, "t", std::slice::from_ref(&r), now).unwrap();
        assert_eq!(used.map(|r| r.id.as_str()), Some("ar-1"));
        // The grant is for its tenant's key only.
        assert!(
            may_download(&restricted, &key("key-2", "t", Role::Public), "t", std::slice::from_ref(&r), now).is_err()
        );
    }

    #[test]
    fn the_grant_policy_names_the_selection_and_refuses_an_area() {
        let mut d = dataset("restricted");
        let r = request(&d);
        let ctx = ngsild_jsonld::core_context();
        let ty = |t: &str| ctx.expand_term(t).into_owned();
        let attr = |a: &str| ngsild_core::expand::expand_attribute_name(a, &ctx);
        let doc = grant_policy(&r, &d, "key-1", &ty, &attr).unwrap();
        let policy = cityhub_access::Policy::from_json(&doc, &|s| s.to_owned()).unwrap();
        assert_eq!(policy.assignee, cityhub_access::Assignee::Subject("key-1".into()));
        assert_eq!(policy.q, d.selection.q);
        assert!(policy.types.unwrap().contains(&ty(&d.selection.types[0])));
        d.selection.geo = Some(crate::dataset::GeoSelection {
            georel: "near;maxDistance==10".into(),
            geometry: "Point".into(),
            coordinates: json!([1, 2]),
            geoproperty: None,
        });
        let e = grant_policy(&r, &d, "key-1", &ty, &attr).unwrap_err();
        assert!(e.detail.contains("area"), "{}", e.detail);
    }
}
