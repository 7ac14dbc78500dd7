//! Accounts: a platform creates and updates customer accounts (individuals
//! and businesses with KYC data), reads them, and lists them; any key reads
//! its own account (`me`). Verification is the `kyc` service's; what an
//! account may send is `limits`.

use super::kyc;
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::accounts::{self, AccountRow};
use crate::ledger::{Effect, Environment, Statement};
use crate::money::Currency;
use crate::pagination::{self, Listing, Scope};
use nixo_api::accounts::{AccountFilter, AccountType, CreateAccount, KycInput, UpdateAccount};
use nixo_api::pagination::ListParams;
use nixo_api::types::{
    AccountBusiness, AccountDocument, AccountIndividual, Address, ObjectType, Representative, VerificationChange,
    WalletRef,
};
use serde_json::{Map, Value, json};

/// Wallet currency of a new customer account when none is asked for.
pub const DEFAULT_WALLET_CURRENCY: &str = "USD";
/// Purpose of the key that seals identity numbers.
pub const ID_NUMBER_SEALING: &str = "nixo identity number sealing key v1";

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("id", format!("No such account: '{id}'"))
}

fn platform_only(what: &str) -> ServiceError {
    ServiceError::Forbidden {
        code: "permission_denied",
        field: None,
        message: format!("Only a platform's own key (without Nixo-Account) can {what}").into(),
    }
}

/// What verification still needs, by account type.
pub fn requirements(row: &AccountRow) -> Vec<String> {
    let mut missing = Vec::new();
    let section = |name: &str| {
        row.profile
            .get(name)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    match row.account_type.as_str() {
        "individual" => {
            let person = section("individual");
            for field in ["first_name", "last_name", "date_of_birth", "address"] {
                if !person.contains_key(field) {
                    missing.push(format!("individual.{field}"));
                }
            }
            if row.id_number_sealed.is_none() {
                missing.push("individual.id_number".into());
            }
        }
        "business" => {
            let company = section("business");
            for field in ["legal_name", "registration_number", "country", "address"] {
                if !company.contains_key(field) {
                    missing.push(format!("business.{field}"));
                }
            }
            let people = company
                .get("representatives")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if people == 0 {
                missing.push("business.representatives".into());
            }
        }
        _ => return missing,
    }
    let documents = row
        .profile
        .get("documents")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if documents == 0 {
        missing.push("documents".into());
    }
    missing
}

/// Whether the data is complete enough to send to the provider (documents
/// may be missing: the provider then asks for them).
pub fn submittable(row: &AccountRow) -> bool {
    requirements(row).iter().all(|r| r == "documents")
}

/// Applies the KYC fields of a request to a row (what is given replaces).
fn apply_input(services: &Services, row: &mut AccountRow, kyc: &KycInput) -> ServiceResult<()> {
    if let Some(email) = &kyc.email {
        row.profile.insert("email".into(), email.expose().into());
    }
    if let Some(phone) = &kyc.phone {
        row.profile.insert("phone".into(), phone.expose().into());
    }
    match (row.account_type.as_str(), &kyc.individual, &kyc.business) {
        ("business", Some(_), _) => {
            return Err(ServiceError::invalid(
                "individual",
                "A business account takes business, not individual",
            ));
        }
        ("individual", _, Some(_)) => {
            return Err(ServiceError::invalid(
                "business",
                "An individual account takes individual, not business",
            ));
        }
        _ => {}
    }
    if let Some(person) = &kyc.individual {
        let mut merged = row
            .profile
            .get("individual")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        merged.extend(person.clone());
        row.profile.insert("individual".into(), Value::Object(merged));
    }
    if let Some(company) = &kyc.business {
        let mut merged = row
            .profile
            .get("business")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        merged.extend(company.clone());
        row.profile.insert("business".into(), Value::Object(merged));
    }
    if let Some(documents) = &kyc.documents {
        let list: Vec<Value> = documents
            .iter()
            .map(|d| json!({ "type": d.kind, "reference": d.reference }))
            .collect();
        row.profile.insert("documents".into(), Value::Array(list));
    }
    if let Some(number) = &kyc.id_number {
        row.id_number_sealed = Some(services.personal.seal(&row.id, number.expose()));
    }
    if let Some(name) = display_name(&row.profile) {
        row.name = name;
    }
    Ok(())
}

fn display_name(profile: &Map<String, Value>) -> Option<String> {
    if let Some(company) = profile.get("business").and_then(|b| b["legal_name"].as_str()) {
        return Some(company.to_string());
    }
    let person = profile.get("individual")?;
    let parts: Vec<&str> = [&person["first_name"], &person["last_name"]]
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn row_binds(row: &AccountRow) -> Vec<crate::db::Bind> {
    vec![
        row.id.clone().into(),
        row.name.clone().into(),
        Value::Object(row.profile.clone()).to_string().into(),
        row.id_number_sealed.clone().into(),
        row.verification_status.clone().into(),
        Value::from(row.verification_reasons.clone()).to_string().into(),
        i64::from(row.kyc_level).into(),
        Value::Object(row.metadata.clone()).to_string().into(),
        row.updated_at_ms.into(),
    ]
}

/// A verification history step.
fn history_effect(account_id: &str, status: &str, reasons: &[String], check_id: Option<&str>, now_ms: i64) -> Effect {
    Effect::Sql(Statement::new(
        "INSERT INTO account_verifications (account_id, status, reasons, check_id, created_at_ms)
              VALUES ($1, $2, $3, $4, $5)",
        vec![
            account_id.to_string().into(),
            status.to_string().into(),
            Value::from(reasons.to_vec()).to_string().into(),
            check_id.map(str::to_string).into(),
            now_ms.into(),
        ],
    ))
}

/// Sets the row's status after new KYC data: pending with a check when the
/// data is complete, else unverified (a verified account keeps its status
/// and level until the new check answers). Returns the effects.
fn restart_verification(row: &mut AccountRow, now_ms: i64) -> Vec<Effect> {
    if submittable(row) {
        let check_id = accounts::new_id("kyc_");
        row.verification_status = "pending".into();
        row.verification_reasons.clear();
        let mut effects = kyc::start_effects(&row.id, &check_id, now_ms);
        effects.push(history_effect(&row.id, "pending", &[], Some(&check_id), now_ms));
        effects
    } else {
        if row.verification_status != "unverified" {
            row.verification_status = "unverified".into();
            row.kyc_level = 0;
            return vec![history_effect(&row.id, "unverified", &[], None, now_ms)];
        }
        Vec::new()
    }
}

/// Creates a customer account under the platform: the row, its wallets, and
/// (with complete KYC data) a verification check, in one transaction.
pub async fn create(
    services: &Services,
    platform: &Actor,
    on_behalf: bool,
    request: CreateAccount,
) -> ServiceResult<AccountRow> {
    let owner = accounts::load(&services.ledger.db, &platform.account_id)
        .await?
        .ok_or_else(|| not_found(&platform.account_id))?;
    if on_behalf || owner.account_type != "platform" {
        return Err(platform_only("create accounts"));
    }
    let now_ms = services.clock.now_ms();
    let mut row = AccountRow {
        id: accounts::new_id("acct_"),
        environment: platform.environment,
        platform_account_id: Some(platform.account_id.clone()),
        account_type: request.account_type.as_str().into(),
        name: match request.account_type {
            AccountType::Individual => "Individual".into(),
            AccountType::Business => "Business".into(),
        },
        profile: Map::new(),
        id_number_sealed: None,
        verification_status: "unverified".into(),
        verification_reasons: Vec::new(),
        kyc_level: 0,
        metadata: request.metadata,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    apply_input(services, &mut row, &request.kyc)?;
    let mut effects = vec![history_effect(&row.id, "unverified", &[], None, now_ms)];
    let verification = restart_verification(&mut row, now_ms);
    let mut binds = row_binds(&row);
    binds.extend([
        row.environment.as_str().into(),
        row.platform_account_id.clone().into(),
        row.account_type.clone().into(),
        row.created_at_ms.into(),
    ]);
    effects.insert(
        0,
        Effect::Sql(Statement::new(
            "INSERT INTO accounts (id, name, profile, id_number_sealed, verification_status, verification_reasons,
                     kyc_level, metadata, updated_at_ms, environment, platform_account_id, account_type, created_at_ms)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            binds,
        )),
    );
    let currencies = if request.currencies.is_empty() {
        vec![Currency::from_code(DEFAULT_WALLET_CURRENCY).expect("USD is ISO 4217")]
    } else {
        request.currencies
    };
    for currency in currencies {
        effects.push(Effect::Sql(Statement::new(
            "INSERT INTO ledger_accounts (owner_account_id, environment, kind, currency, flags, created_at_ms)
                  VALUES ($1, $2, 'wallet', $3, $4, $5)",
            vec![
                row.id.clone().into(),
                row.environment.as_str().into(),
                currency.code.into(),
                crate::ledger::FLAG_NO_OVERDRAFT.into(),
                now_ms.into(),
            ],
        )));
    }
    effects.extend(verification);
    services.ledger.apply_effects(effects, now_ms).await?;
    services.jobs.wake();
    Ok(row)
}

/// An account the platform may see: its own, or one of its customers'.
pub async fn retrieve(services: &Services, platform: &Actor, id: &str) -> ServiceResult<AccountRow> {
    if !nixo_api::accounts::account_id_ok(id) {
        return Err(not_found(id));
    }
    let row = accounts::load(&services.ledger.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let visible = row.environment == platform.environment
        && (row.id == platform.account_id || row.platform_account_id.as_deref() == Some(platform.account_id.as_str()));
    if visible { Ok(row) } else { Err(not_found(id)) }
}

/// The actor's own account.
pub async fn me(services: &Services, actor: &Actor) -> ServiceResult<AccountRow> {
    accounts::load(&services.ledger.db, &actor.account_id)
        .await?
        .ok_or_else(|| not_found(&actor.account_id))
}

/// Updates a customer account; new KYC data restarts verification.
pub async fn update(
    services: &Services,
    platform: &Actor,
    on_behalf: bool,
    id: &str,
    request: UpdateAccount,
) -> ServiceResult<AccountRow> {
    if on_behalf {
        return Err(platform_only("update accounts"));
    }
    let mut row = retrieve(services, platform, id).await?;
    if row.account_type == "platform" {
        return Err(ServiceError::Forbidden {
            code: "permission_denied",
            field: Some("id".into()),
            message: "A platform's own account is managed by Nixo; update your customer accounts".into(),
        });
    }
    let now_ms = services.clock.now_ms();
    let before = row.updated_at_ms;
    apply_input(services, &mut row, &request.kyc)?;
    if let Some(metadata) = request.metadata {
        row.metadata = metadata;
    }
    row.updated_at_ms = now_ms;
    let verification = if request.kyc.touches_verification() {
        restart_verification(&mut row, now_ms)
    } else {
        Vec::new()
    };
    let mut binds = row_binds(&row);
    binds.push(before.into());
    let mut effects = vec![Effect::Sql(
        Statement::new(
            "UPDATE accounts SET name = $2, profile = $3, id_number_sealed = $4, verification_status = $5,
                 verification_reasons = $6, kyc_level = $7, metadata = $8, updated_at_ms = $9
              WHERE id = $1 AND COALESCE(updated_at_ms, created_at_ms) = $10",
            binds,
        )
        .must_change("account_changed"),
    )];
    effects.extend(verification);
    services
        .ledger
        .apply_effects(effects, now_ms)
        .await
        .map_err(|err| match err {
            crate::ledger::LedgerError::EffectRefused(_) => ServiceError::Conflict {
                code: "account_changed",
                message: format!("Account {id} was changed by another request at the same time; retry").into(),
            },
            other => other.into(),
        })?;
    services.jobs.wake();
    Ok(row)
}

/// The platform's customer accounts, newest first.
pub async fn list(
    services: &Services,
    platform: &Actor,
    filter: &AccountFilter,
    page: &ListParams,
) -> ServiceResult<(Vec<AccountRow>, bool)> {
    let mut scope = Scope {
        filter: "platform_account_id = $1 AND environment = $2".into(),
        binds: vec![platform.account_id.clone().into(), platform.environment.as_str().into()],
    };
    if let Some(status) = filter.verification_status {
        scope.and("verification_status =", status.into());
    }
    scope.created(filter.created);
    let listing = Listing::by_created(accounts::COLUMNS, "accounts", scope);
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let accounts = rows
        .rows
        .iter()
        .map(AccountRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((accounts, rows.has_more))
}

fn address(value: Option<&Value>) -> Option<Address> {
    let a = value?;
    let text = |k: &str| a[k].as_str().map(str::to_string);
    Some(Address {
        line1: text("line1")?,
        line2: text("line2"),
        city: text("city")?,
        postal_code: text("postal_code"),
        country: text("country")?,
    })
}

/// The account object: profile (identity number masked), verification,
/// requirements, limits with today's use, wallets and balances.
pub async fn render(services: &Services, row: &AccountRow) -> ServiceResult<nixo_api::types::Account> {
    let db = &services.ledger.db;
    let now_ms = services.clock.now_ms();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let individual = row.profile.get("individual").map(|p| AccountIndividual {
        first_name: text(p, "first_name"),
        last_name: text(p, "last_name"),
        date_of_birth: text(p, "date_of_birth"),
        address: address(p.get("address")),
        id_type: text(p, "id_type"),
        id_number: row
            .id_number_sealed
            .as_deref()
            .and_then(|sealed| services.personal.open(&row.id, sealed))
            .map(|clear| nixo_api::accounts::Personal::new(clear).masked()),
        nationality: text(p, "nationality"),
    });
    let individual = match (individual, row.account_type.as_str()) {
        (None, "individual") => Some(AccountIndividual::default()),
        (other, _) => other,
    };
    let business = row.profile.get("business").map(|b| AccountBusiness {
        legal_name: text(b, "legal_name"),
        registration_number: text(b, "registration_number"),
        country: text(b, "country"),
        address: address(b.get("address")),
        representatives: b
            .get("representatives")
            .and_then(Value::as_array)
            .map(|people| {
                people
                    .iter()
                    .filter_map(|p| {
                        Some(Representative {
                            first_name: text(p, "first_name")?,
                            last_name: text(p, "last_name")?,
                            date_of_birth: text(p, "date_of_birth"),
                            role: text(p, "role"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    });
    let documents = row
        .profile
        .get("documents")
        .and_then(Value::as_array)
        .map(|docs| {
            docs.iter()
                .filter_map(|d| {
                    Some(AccountDocument {
                        kind: text(d, "type")?,
                        reference: text(d, "reference")?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let history = accounts::history(db, &row.id).await?;
    let wallets = accounts::wallets(db, &row.id).await?;
    let mut currencies: Vec<String> = wallets.iter().map(|(_, c)| c.clone()).collect();
    currencies.dedup();
    let limits = crate::limits::view(db, &services.limits, row.kyc_level, &row.id, &currencies, now_ms).await?;
    let balances = services.ledger.balances(&row.id, None).await?;
    Ok(nixo_api::types::Account {
        id: row.id.clone(),
        object: ObjectType::Account,
        account_type: row.account_type.clone(),
        platform: row.platform_account_id.clone(),
        email: row.profile.get("email").and_then(Value::as_str).map(str::to_string),
        phone: row.profile.get("phone").and_then(Value::as_str).map(str::to_string),
        individual,
        business,
        documents,
        verification_status: row.verification_status.clone(),
        verification_reasons: row.verification_reasons.clone(),
        verification_history: history
            .into_iter()
            .map(|h| VerificationChange {
                status: h.status,
                reasons: h.reasons,
                at: h.at_ms / 1000,
            })
            .collect(),
        requirements: if row.account_type == "platform" {
            Vec::new()
        } else {
            requirements(row)
        },
        limits,
        wallets: wallets
            .into_iter()
            .map(|(id, currency)| WalletRef { id, currency })
            .collect(),
        balances: crate::resources::balance(row.environment == Environment::Live, &balances),
        metadata: row.metadata.clone(),
        livemode: row.environment == Environment::Live,
        created: row.created_at_ms / 1000,
    })
}
