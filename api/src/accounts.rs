//! The account routes' request rules: the `POST /v1/accounts` and
//! `PUT /v1/accounts/{id}` bodies, the `GET /v1/accounts` filters, and the
//! `Nixo-Account` header. The edge validates with these functions and the
//! core parses with them. Personal data is held in [`Personal`], whose
//! `Debug` and `Display` never show it.

use crate::pagination::{CreatedRange, ListParams};
use crate::schema::{self, Checked, Currency, FieldError, bounded, text};
use serde_json::{Map, Value};
use std::fmt;

/// The header that makes a platform's request act for one of its customer accounts.
pub const ACCOUNT_HEADER: &str = "nixo-account";
/// Fields of a create body; an update takes the same but `type` and `currencies`.
pub const CREATE_FIELDS: [&str; 8] = [
    "type",
    "email",
    "phone",
    "individual",
    "business",
    "documents",
    "currencies",
    "metadata",
];
pub const UPDATE_FIELDS: [&str; 6] = ["email", "phone", "individual", "business", "documents", "metadata"];
pub const INDIVIDUAL_FIELDS: [&str; 7] = [
    "first_name",
    "last_name",
    "date_of_birth",
    "address",
    "id_type",
    "id_number",
    "nationality",
];
pub const BUSINESS_FIELDS: [&str; 5] = [
    "legal_name",
    "registration_number",
    "country",
    "address",
    "representatives",
];
pub const REPRESENTATIVE_FIELDS: [&str; 4] = ["first_name", "last_name", "date_of_birth", "role"];
pub const ADDRESS_FIELDS: [&str; 5] = ["line1", "line2", "city", "postal_code", "country"];
pub const DOCUMENT_FIELDS: [&str; 2] = ["type", "reference"];
pub const DOCUMENT_TYPES: [&str; 5] = [
    "passport",
    "national_id",
    "driving_license",
    "certificate_of_incorporation",
    "proof_of_address",
];
pub const ID_TYPES: [&str; 2] = ["national_id", "passport"];
pub const VERIFICATION_STATUSES: [&str; 4] = ["unverified", "pending", "verified", "rejected"];
/// Longest name, in characters.
pub const NAME_LEN_MAX: usize = 100;
/// Longest address line, city or postal code, in characters.
pub const ADDRESS_LEN_MAX: usize = 200;
/// An identity or registration number: 4 to this many letters, digits or `-`.
pub const ID_NUMBER_LEN_MAX: usize = 32;
pub const ID_NUMBER_LEN_MIN: usize = 4;
/// Longest email address (RFC 5321 path limit).
pub const EMAIL_LEN_MAX: usize = 254;
/// Documents per account at most.
pub const DOCUMENTS_MAX: usize = 10;
/// Representatives per business at most.
pub const REPRESENTATIVES_MAX: usize = 10;
/// Wallet currencies asked for at creation at most.
pub const CURRENCIES_MAX: usize = 8;
/// Longest document reference (an id in the platform's file store).
pub const DOCUMENT_REFERENCE_LEN_MAX: usize = 128;

/// Personal data: shown as `[redacted]` by `Debug` and `Display`, so it
/// cannot reach a log by accident. [`Personal::expose`] is the one way to
/// read it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Personal(String);

impl Personal {
    pub fn new(text: impl Into<String>) -> Personal {
        Personal(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// All but the last four characters hidden (`•••••6789`).
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let shown = chars.len().saturating_sub(4);
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| if i < shown { '•' } else { *c })
            .collect()
    }
}

impl fmt::Debug for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Individual or business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountType {
    Individual,
    Business,
}

impl AccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Individual => "individual",
            AccountType::Business => "business",
        }
    }

    pub fn parse(text: &str) -> Option<AccountType> {
        match text {
            "individual" => Some(AccountType::Individual),
            "business" => Some(AccountType::Business),
            _ => None,
        }
    }
}

/// A document the platform collected (its file stays in the platform's store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: &'static str,
    pub reference: String,
}

/// The KYC data of a request: profile fields as JSON (every value checked)
/// and the identity number apart, as personal data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KycInput {
    pub email: Option<Personal>,
    pub phone: Option<Personal>,
    /// `individual` without `id_number` (checked fields only).
    pub individual: Option<Map<String, Value>>,
    pub id_number: Option<Personal>,
    pub business: Option<Map<String, Value>>,
    pub documents: Option<Vec<Document>>,
}

impl KycInput {
    /// Whether the request touches what verification looks at.
    pub fn touches_verification(&self) -> bool {
        self.individual.is_some() || self.id_number.is_some() || self.business.is_some() || self.documents.is_some()
    }
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAccount {
    pub account_type: AccountType,
    pub kyc: KycInput,
    pub currencies: Vec<Currency>,
    pub metadata: Map<String, Value>,
}

/// `PUT /v1/accounts/{id}`: what is given replaces what was there.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateAccount {
    pub kyc: KycInput,
    pub metadata: Option<Map<String, Value>>,
}

fn object<'a>(value: &'a Value, field: &str, known: &[&str]) -> Checked<&'a Map<String, Value>> {
    let map = value
        .as_object()
        .ok_or_else(|| FieldError::new(field, format!("{field} must be an object")))?;
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let name = format!("{field}.{unknown}");
        return Err(FieldError::new(
            name.clone(),
            format!("Received unknown parameter: {name}"),
        ));
    }
    Ok(map)
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// ISO 3166-1 alpha-2, upper case.
pub fn country_ok(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())
}

/// A calendar date `YYYY-MM-DD` from 1900 on.
pub fn date_ok(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let number = |r: std::ops::Range<usize>| {
        text.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<u32>()
            .ok()
    };
    let (Some(y), Some(m), Some(d)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1900 && (1..=days).contains(&d)
}

/// `local@domain.tld`: the local part of letters, digits and `._%+-` (1 to
/// 64), the domain of two or more labels of letters, digits and `-`.
pub fn email_ok(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    text.len() <= EMAIL_LEN_MAX
        && (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
        && labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// E.164: `+` and 8 to 15 digits.
pub fn phone_ok(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
}

/// Letters, digits and `-`, 4 to 32.
pub fn id_number_ok(text: &str) -> bool {
    (ID_NUMBER_LEN_MIN..=ID_NUMBER_LEN_MAX).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn checked_text(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
    ok: fn(&str) -> bool,
    rule: &str,
) -> Checked<Option<String>> {
    match text(map, key, field)? {
        None => Ok(None),
        Some(t) if ok(t) => Ok(Some(t.to_string())),
        Some(_) => Err(FieldError::new(field, format!("{field} must be {rule}"))),
    }
}

fn name(map: &Map<String, Value>, key: &str, field: &str, max: usize) -> Checked<Option<String>> {
    text(map, key, field)?.map(|t| bounded(t, field, max)).transpose()
}

fn address(value: &Value, field: &str) -> Checked<Value> {
    let map = object(value, field, &ADDRESS_FIELDS)?;
    let mut out = Map::new();
    for key in ["line1", "line2", "city", "postal_code"] {
        if let Some(t) = name(map, key, &format!("{field}.{key}"), ADDRESS_LEN_MAX)? {
            out.insert(key.into(), t.into());
        }
    }
    for required in ["line1", "city"] {
        if !out.contains_key(required) {
            return Err(FieldError::missing(&format!("{field}.{required}")));
        }
    }
    let country = checked_text(
        map,
        "country",
        &format!("{field}.country"),
        country_ok,
        "an ISO 3166-1 alpha-2 code such as \"KE\"",
    )?
    .ok_or_else(|| FieldError::missing(&format!("{field}.country")))?;
    out.insert("country".into(), country.into());
    Ok(Value::Object(out))
}

const DATE_RULE: &str = "a date YYYY-MM-DD from 1900 on";

/// The `individual` object: checked fields, and the identity number apart.
fn individual(value: &Value) -> Checked<(Map<String, Value>, Option<Personal>)> {
    let map = object(value, "individual", &INDIVIDUAL_FIELDS)?;
    let mut out = Map::new();
    for key in ["first_name", "last_name"] {
        if let Some(t) = name(map, key, &format!("individual.{key}"), NAME_LEN_MAX)? {
            out.insert(key.into(), t.into());
        }
    }
    if let Some(d) = checked_text(map, "date_of_birth", "individual.date_of_birth", date_ok, DATE_RULE)? {
        out.insert("date_of_birth".into(), d.into());
    }
    if let Some(a) = present(map, "address") {
        out.insert("address".into(), address(a, "individual.address")?);
    }
    if let Some(t) = text(map, "id_type", "individual.id_type")? {
        let kind = ID_TYPES.into_iter().find(|k| *k == t).ok_or_else(|| {
            FieldError::new(
                "individual.id_type",
                "individual.id_type must be national_id or passport",
            )
        })?;
        out.insert("id_type".into(), kind.into());
    }
    if let Some(n) = checked_text(
        map,
        "nationality",
        "individual.nationality",
        country_ok,
        "an ISO 3166-1 alpha-2 code",
    )? {
        out.insert("nationality".into(), n.into());
    }
    let id_number = checked_text(
        map,
        "id_number",
        "individual.id_number",
        id_number_ok,
        "4 to 32 letters, digits or '-'",
    )?
    .map(Personal::new);
    Ok((out, id_number))
}

fn business(value: &Value) -> Checked<Map<String, Value>> {
    let map = object(value, "business", &BUSINESS_FIELDS)?;
    let mut out = Map::new();
    if let Some(t) = name(map, "legal_name", "business.legal_name", ADDRESS_LEN_MAX)? {
        out.insert("legal_name".into(), t.into());
    }
    if let Some(t) = checked_text(
        map,
        "registration_number",
        "business.registration_number",
        id_number_ok,
        "4 to 32 letters, digits or '-'",
    )? {
        out.insert("registration_number".into(), t.into());
    }
    if let Some(c) = checked_text(
        map,
        "country",
        "business.country",
        country_ok,
        "an ISO 3166-1 alpha-2 code",
    )? {
        out.insert("country".into(), c.into());
    }
    if let Some(a) = present(map, "address") {
        out.insert("address".into(), address(a, "business.address")?);
    }
    if let Some(list) = present(map, "representatives") {
        let items = list
            .as_array()
            .filter(|l| l.len() <= REPRESENTATIVES_MAX)
            .ok_or_else(|| {
                FieldError::new(
                    "business.representatives",
                    format!("business.representatives must be a list of at most {REPRESENTATIVES_MAX} people"),
                )
            })?;
        let mut people = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("business.representatives[{i}]");
            let map = object(item, &field, &REPRESENTATIVE_FIELDS)?;
            let mut person = Map::new();
            for key in ["first_name", "last_name", "role"] {
                let f = format!("{field}.{key}");
                let t = name(map, key, &f, NAME_LEN_MAX)?;
                match (t, key) {
                    (Some(t), _) => {
                        person.insert(key.into(), t.into());
                    }
                    (None, "role") => {}
                    (None, _) => return Err(FieldError::missing(&f)),
                }
            }
            if let Some(d) = checked_text(
                map,
                "date_of_birth",
                &format!("{field}.date_of_birth"),
                date_ok,
                DATE_RULE,
            )? {
                person.insert("date_of_birth".into(), d.into());
            }
            people.push(Value::Object(person));
        }
        out.insert("representatives".into(), Value::Array(people));
    }
    Ok(out)
}

fn documents(value: &Value) -> Checked<Vec<Document>> {
    let items = value.as_array().filter(|l| l.len() <= DOCUMENTS_MAX).ok_or_else(|| {
        FieldError::new(
            "documents",
            format!("documents must be a list of at most {DOCUMENTS_MAX}"),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("documents[{i}]");
            let map = object(item, &field, &DOCUMENT_FIELDS)?;
            let kind_field = format!("{field}.type");
            let kind = text(map, "type", &kind_field)?.ok_or_else(|| FieldError::missing(&kind_field))?;
            let kind = DOCUMENT_TYPES.into_iter().find(|k| *k == kind).ok_or_else(|| {
                FieldError::new(
                    kind_field.clone(),
                    format!("{kind_field} must be one of {}", DOCUMENT_TYPES.join(", ")),
                )
            })?;
            let reference_field = format!("{field}.reference");
            let reference =
                text(map, "reference", &reference_field)?.ok_or_else(|| FieldError::missing(&reference_field))?;
            Ok(Document {
                kind,
                reference: bounded(reference, &reference_field, DOCUMENT_REFERENCE_LEN_MAX)?,
            })
        })
        .collect()
}

fn kyc_input(map: &Map<String, Value>) -> Checked<KycInput> {
    let mut kyc = KycInput {
        email: checked_text(
            map,
            "email",
            "email",
            email_ok,
            "an email address such as \"ama@example.com\"",
        )?
        .map(Personal::new),
        phone: checked_text(
            map,
            "phone",
            "phone",
            phone_ok,
            "an E.164 number such as \"+254708374149\"",
        )?
        .map(Personal::new),
        ..KycInput::default()
    };
    if let Some(v) = present(map, "individual") {
        let (fields, id_number) = individual(v)?;
        kyc.individual = Some(fields);
        kyc.id_number = id_number;
    }
    if let Some(v) = present(map, "business") {
        kyc.business = Some(business(v)?);
    }
    kyc.documents = present(map, "documents").map(documents).transpose()?;
    Ok(kyc)
}

/// Parses and checks a `POST /v1/accounts` body.
pub fn create_request(body: &[u8]) -> Checked<CreateAccount> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &CREATE_FIELDS)?;
    let kind = text(&map, "type", "type")?.ok_or_else(|| FieldError::missing("type"))?;
    let account_type = AccountType::parse(kind)
        .ok_or_else(|| FieldError::new("type", "type must be \"individual\" or \"business\""))?;
    let kyc = kyc_input(&map)?;
    match account_type {
        AccountType::Individual if kyc.business.is_some() => {
            return Err(FieldError::new(
                "business",
                "An individual account takes individual, not business",
            ));
        }
        AccountType::Business if kyc.individual.is_some() => {
            return Err(FieldError::new(
                "individual",
                "A business account takes business, not individual",
            ));
        }
        _ => {}
    }
    let mut currencies = Vec::new();
    if let Some(list) = present(&map, "currencies") {
        let items = list
            .as_array()
            .filter(|l| (1..=CURRENCIES_MAX).contains(&l.len()))
            .ok_or_else(|| {
                FieldError::new(
                    "currencies",
                    format!("currencies must be a list of 1 to {CURRENCIES_MAX} ISO 4217 codes"),
                )
            })?;
        for (i, item) in items.iter().enumerate() {
            let currency = schema::currency(Some(item), &format!("currencies[{i}]"))?;
            if !currencies.contains(&currency) {
                currencies.push(currency);
            }
        }
    }
    Ok(CreateAccount {
        account_type,
        kyc,
        currencies,
        metadata: schema::metadata(map.get("metadata"))?,
    })
}

/// Parses and checks a `PUT /v1/accounts/{id}` body.
pub fn update_request(body: &[u8]) -> Checked<UpdateAccount> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &UPDATE_FIELDS)?;
    Ok(UpdateAccount {
        kyc: kyc_input(&map)?,
        metadata: present(&map, "metadata")
            .map(|m| schema::metadata(Some(m)))
            .transpose()?,
    })
}

/// `GET /v1/accounts` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    pub verification_status: Option<&'static str>,
    pub created: CreatedRange,
}

/// Parses the `GET /v1/accounts` query.
pub fn accounts_query(query: Option<&str>) -> Checked<(AccountFilter, ListParams)> {
    let (mut filter, mut page) = (AccountFilter::default(), ListParams::default());
    for (key, value) in schema::query_pairs(query) {
        if let Some(taken) = page.take(&key, &value).or_else(|| filter.created.take(&key, &value)) {
            taken?;
            continue;
        }
        match key.as_str() {
            "verification_status" => {
                filter.verification_status =
                    Some(VERIFICATION_STATUSES.into_iter().find(|s| *s == value).ok_or_else(|| {
                        FieldError::new(
                            "verification_status",
                            format!(
                                "verification_status must be one of {}",
                                VERIFICATION_STATUSES.join(", ")
                            ),
                        )
                    })?);
            }
            other => return Err(FieldError::new(other, format!("Received unknown parameter: {other}"))),
        }
    }
    Ok((filter, page))
}

/// An account id: `acct_` and letters or digits.
pub fn account_id_ok(id: &str) -> bool {
    id.len() > 5 && id.len() <= 64 && id.starts_with("acct_") && id[5..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `Nixo-Account` header, checked.
pub fn account_header(value: &str) -> Checked<String> {
    let value = value.trim();
    if account_id_ok(value) {
        Ok(value.to_string())
    } else {
        Err(FieldError::new(
            "Nixo-Account",
            "Nixo-Account must be an account id such as acct_1A2B3C4D5E6F7G8H",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_never_prints() {
        let p = Personal::new("A1234567");
        assert_eq!(format!("{p} {p:?}"), "[redacted] [redacted]");
        assert_eq!(p.masked(), "••••4567");
        let kyc =
            create_request(br#"{"type":"individual","individual":{"id_number":"A1234567"},"email":"a@b.co"}"#).unwrap();
        let shown = format!("{kyc:?}");
        assert!(!shown.contains("A1234567") && !shown.contains("a@b.co"), "{shown}");
    }

    #[test]
    fn dates_are_calendar_dates() {
        for ok in ["1990-02-28", "2000-02-29", "1900-01-01"] {
            assert!(date_ok(ok), "{ok}");
        }
        for bad in [
            "1990-02-30",
            "1899-12-31",
            "1990-13-01",
            "1990-1-01",
            "2001-02-29",
            "abcd-ef-gh",
        ] {
            assert!(!date_ok(bad), "{bad}");
        }
    }

    #[test]
    fn bodies_name_the_field_at_fault() {
        let err = create_request(
            br#"{"type":"individual","individual":{"address":{"line1":"x","city":"y","country":"kenya"}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "individual.address.country");
        let err = create_request(br#"{"type":"business","individual":{}}"#).unwrap_err();
        assert_eq!(err.field, "individual");
        let err =
            create_request(br#"{"type":"individual","documents":[{"type":"selfie","reference":"f"}]}"#).unwrap_err();
        assert_eq!(err.field, "documents[0].type");
        let err = update_request(br#"{"phone":"0712345678"}"#).unwrap_err();
        assert_eq!(err.field, "phone");
        assert_eq!(account_header("acct_x y").unwrap_err().field, "Nixo-Account");
    }
}
