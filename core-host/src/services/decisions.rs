//! The decision log as the actor may read it: its own account's rule
//! calls, newest first, in cursor pages.

use super::{Actor, ServiceResult, Services};
use crate::rules::decision_log;
use nixo_api::pagination::ListParams;
use nixo_api::types::RuleDecision;

/// A page of the actor's decisions, optionally of one transaction, and
/// whether more follow.
pub async fn list(
    services: &Services,
    actor: &Actor,
    transaction_id: Option<i64>,
    page: &ListParams,
) -> ServiceResult<(Vec<RuleDecision>, bool)> {
    decision_log::list(&services.ledger.db, &actor.account_id, transaction_id, page).await
}
