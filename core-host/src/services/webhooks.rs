//! Webhook endpoints and the event log as the API shows them: create (the
//! secret shown once), list, retrieve, update, delete, rotate the secret
//! with a grace period, list an endpoint's attempts, list and retrieve
//! events, resend an event to an endpoint.

use super::{Actor, ServiceError, ServiceResult, Services};
use crate::events::{self, EventRow};
use crate::pagination::{self, Bind, Listing};
use crate::webhooks::{self, Endpoint, delivery};
use nixo_api::pagination::ListParams;
use nixo_api::types::{Event, EventData, ObjectType, WebhookAttempt};
use nixo_api::webhooks::{EndpointRequest, EventFilter};
use serde_json::Value;
use sqlx::Row;

/// Events are kept this long (a periodic job deletes older ones).
pub const EVENT_RETENTION_MS: i64 = 30 * 86_400_000;
pub const EVENT_PURGE_JOB: &str = "events.purge";
pub const EVENT_PURGE_INTERVAL_MS: i64 = 3_600_000;

fn not_found(what: &str, id: &str) -> ServiceError {
    ServiceError::NotFound {
        field: None,
        message: format!("No such {what}: '{id}'").into(),
    }
}

/// Whether the URL may be used in this environment (live: https only; the
/// address is checked again at every delivery).
fn check_url(actor: &Actor, url: &str) -> ServiceResult<()> {
    if actor.environment == crate::ledger::Environment::Live && !url.starts_with("https://") {
        return Err(ServiceError::invalid("url", "Live webhook endpoints must use https"));
    }
    Ok(())
}

/// A new endpoint and its secret (shown this once).
pub async fn create(services: &Services, actor: &Actor, req: EndpointRequest) -> ServiceResult<(Endpoint, String)> {
    let url = req
        .url
        .ok_or_else(|| ServiceError::invalid("url", "Missing required parameter: url"))?;
    check_url(actor, &url)?;
    if let Some(why) = delivery::refusal(actor.environment, &url).await {
        return Err(ServiceError::invalid("url", why));
    }
    let now_ms = services.clock.now_ms();
    let id = webhooks::new_endpoint_id();
    let secret = webhooks::new_secret();
    let endpoint = Endpoint {
        secret_sealed: services.webhooks.sealer.seal(&id, &secret),
        id,
        account_id: actor.account_id.clone(),
        environment: actor.environment,
        url,
        description: req.description,
        enabled_events: req.enabled_events.unwrap_or_else(|| vec!["*".into()]),
        api_version: req.api_version,
        metadata: req.metadata.unwrap_or_default(),
        enabled: true,
        disabled_reason: None,
        previous_secret_sealed: None,
        previous_secret_expires_at_ms: None,
        failing_since_ms: None,
        deleted: false,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    crate::db::bind_all(sqlx::query(webhooks::INSERT_SQL), &webhooks::insert_binds(&endpoint))
        .execute(&services.ledger.db.pool)
        .await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint created");
    Ok((endpoint, secret))
}

/// One of the actor's endpoints (not deleted).
pub async fn retrieve(services: &Services, actor: &Actor, id: &str) -> ServiceResult<Endpoint> {
    if !nixo_api::webhooks::id_ok(id, "we_") {
        return Err(not_found("webhook endpoint", id));
    }
    webhooks::load(&services.ledger.db, id)
        .await?
        .filter(|e| !e.deleted && e.account_id == actor.account_id && e.environment == actor.environment)
        .ok_or_else(|| not_found("webhook endpoint", id))
}

/// A page of the actor's endpoints.
pub async fn list(services: &Services, actor: &Actor, page: &ListParams) -> ServiceResult<(Vec<Endpoint>, bool)> {
    let mut scope = pagination::Scope::owned_by(actor);
    scope.filter.push_str(" AND deleted_at_ms IS NULL");
    let listing = Listing::by_created(webhooks::COLUMNS, "webhook_endpoints", scope);
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let endpoints = rows.rows.iter().map(Endpoint::from_row).collect::<Result<_, _>>()?;
    Ok((endpoints, rows.has_more))
}

/// Changes what the request names.
pub async fn update(services: &Services, actor: &Actor, id: &str, req: EndpointRequest) -> ServiceResult<Endpoint> {
    let mut endpoint = retrieve(services, actor, id).await?;
    if let Some(url) = req.url {
        check_url(actor, &url)?;
        endpoint.url = url;
    }
    if let Some(events) = req.enabled_events {
        endpoint.enabled_events = events;
    }
    if let Some(description) = req.description {
        endpoint.description = Some(description);
    }
    if let Some(version) = req.api_version {
        endpoint.api_version = Some(version);
    }
    if let Some(metadata) = req.metadata {
        endpoint.metadata = metadata;
    }
    if let Some(disabled) = req.disabled {
        endpoint.enabled = !disabled;
        endpoint.disabled_reason = disabled.then(|| "Disabled by the account".to_string());
        endpoint.failing_since_ms = None;
    }
    endpoint.updated_at_ms = services.clock.now_ms();
    webhooks::save(&services.ledger.db, &endpoint).await?;
    Ok(endpoint)
}

/// Deletes an endpoint: no more deliveries; its attempts stay readable by id.
pub async fn delete(services: &Services, actor: &Actor, id: &str) -> ServiceResult<String> {
    let endpoint = retrieve(services, actor, id).await?;
    sqlx::query("UPDATE webhook_endpoints SET deleted_at_ms = $1, updated_at_ms = $1 WHERE id = $2")
        .bind(services.clock.now_ms())
        .bind(endpoint.id.as_str())
        .execute(&services.ledger.db.pool)
        .await?;
    Ok(endpoint.id)
}

/// A new secret; the old one keeps signing for `grace_secs`.
pub async fn rotate_secret(
    services: &Services,
    actor: &Actor,
    id: &str,
    grace_secs: i64,
) -> ServiceResult<(Endpoint, String)> {
    let mut endpoint = retrieve(services, actor, id).await?;
    let now_ms = services.clock.now_ms();
    let secret = webhooks::new_secret();
    let old = std::mem::replace(
        &mut endpoint.secret_sealed,
        services.webhooks.sealer.seal(&endpoint.id, &secret),
    );
    (endpoint.previous_secret_sealed, endpoint.previous_secret_expires_at_ms) = if grace_secs > 0 {
        (Some(old), Some(now_ms + grace_secs * 1000))
    } else {
        (None, None)
    };
    endpoint.updated_at_ms = now_ms;
    webhooks::save(&services.ledger.db, &endpoint).await?;
    tracing::info!(endpoint = %endpoint.id, grace_secs, "webhook secret rotated");
    Ok((endpoint, secret))
}

/// A page of an endpoint's attempts, newest first.
pub async fn attempts(
    services: &Services,
    actor: &Actor,
    id: &str,
    page: &ListParams,
) -> ServiceResult<(Vec<WebhookAttempt>, bool)> {
    let endpoint = retrieve(services, actor, id).await?;
    let scope = pagination::Scope {
        filter: "endpoint_id = $1".into(),
        binds: vec![Bind::Text(endpoint.id)],
    };
    let listing = Listing::by_created(
        "id, endpoint_id, event_id, attempt, http_status, latency_ms, error, next_retry_at_ms, created_at_ms",
        "webhook_attempts",
        scope,
    );
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let attempts = rows
        .rows
        .iter()
        .map(|r| {
            Ok(WebhookAttempt {
                id: r.try_get(0)?,
                object: ObjectType::WebhookAttempt,
                endpoint: r.try_get(1)?,
                event: r.try_get(2)?,
                attempt: r.try_get(3)?,
                http_status: r.try_get(4)?,
                latency_ms: r.try_get(5)?,
                error: r.try_get(6)?,
                next_retry_at: r.try_get::<Option<i64>, _>(7)?.map(|ms| ms / 1000),
                created: r.try_get::<i64, _>(8)? / 1000,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((attempts, rows.has_more))
}

/// The API object of an event.
pub fn render_event(row: &EventRow) -> Event {
    let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    Event {
        id: row.id.clone(),
        object: ObjectType::Event,
        event_type: row.event_type.clone(),
        created: row.created_at_ms / 1000,
        api_version: row.api_version.clone(),
        livemode: row.environment == "live",
        data: EventData {
            object: data.get("object").cloned().unwrap_or(Value::Null),
        },
    }
}

const EVENT_COLUMNS: &str = "id, type, account_id, environment, api_version, data, created_at_ms";

/// A page of the actor's events, newest first.
pub async fn list_events(
    services: &Services,
    actor: &Actor,
    filter: &EventFilter,
    page: &ListParams,
) -> ServiceResult<(Vec<Event>, bool)> {
    let mut scope = pagination::Scope::owned_by(actor);
    if let Some(t) = &filter.event_type {
        scope.and("type =", Bind::Text(t.clone()));
    }
    scope.created(filter.created);
    let listing = Listing::by_created(EVENT_COLUMNS, "events", scope);
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let list = rows
        .rows
        .iter()
        .map(|r| events::from_row(r).map(|row| render_event(&row)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((list, rows.has_more))
}

/// One of the actor's events.
pub async fn retrieve_event(services: &Services, actor: &Actor, id: &str) -> ServiceResult<EventRow> {
    if !nixo_api::webhooks::id_ok(id, "evt_") {
        return Err(not_found("event", id));
    }
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND account_id = $2 AND environment = $3");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(actor.account_id.as_str())
        .bind(actor.environment.as_str())
        .fetch_optional(&services.ledger.db.pool)
        .await?;
    row.as_ref()
        .map(events::from_row)
        .transpose()?
        .ok_or_else(|| not_found("event", id))
}

/// Sends an event again to one of the actor's endpoints (a fresh attempt
/// series; disabled endpoints are refused).
pub async fn resend(services: &Services, actor: &Actor, event_id: &str, endpoint_id: &str) -> ServiceResult<EventRow> {
    let event = retrieve_event(services, actor, event_id).await?;
    let endpoint = retrieve(services, actor, endpoint_id)
        .await
        .map_err(|_| ServiceError::not_found("endpoint", format!("No such webhook endpoint: '{endpoint_id}'")))?;
    if !endpoint.enabled {
        return Err(ServiceError::Conflict {
            code: "webhook_endpoint_disabled",
            message: format!("Webhook endpoint {} is disabled; enable it first", endpoint.id).into(),
        });
    }
    let now_ms = services.clock.now_ms();
    let effects = vec![
        delivery::queue_effect(&event.id, &endpoint.id, now_ms),
        delivery::pump_effect(&endpoint.id, now_ms),
    ];
    services.ledger.apply_effects(effects, now_ms).await?;
    services.jobs.wake();
    Ok(event)
}

/// Deletes events past retention, and their delivery rows (the
/// `events.purge` job; retries end long before).
pub async fn purge_events(services: &Services) -> ServiceResult<u64> {
    let before = services.clock.now_ms() - EVENT_RETENTION_MS;
    let ledger = &services.ledger;
    let events = ledger
        .purge(
            "events",
            "id",
            "created_at_ms < $1 AND dispatched_at_ms IS NOT NULL",
            vec![before.into()],
        )
        .await?;
    ledger
        .purge("webhook_deliveries", "id", "created_at_ms < $1", vec![before.into()])
        .await?;
    Ok(events)
}
