//! Balances of the actor's wallets per currency: available, pending and
//! reserved, derived from the ledger.

use super::{Actor, ServiceError, ServiceResult, Services};
use crate::ledger::Balance;

/// Balances of all the actor's wallets, or of one of them.
pub async fn balances(services: &Services, actor: &Actor, wallet_id: Option<i64>) -> ServiceResult<Vec<Balance>> {
    if let Some(id) = wallet_id {
        let owned = services
            .ledger
            .wallet(id)
            .await?
            .is_some_and(|w| w.owner_account_id == actor.account_id && w.environment == actor.environment);
        if !owned {
            return Err(ServiceError::not_found("wallet_id", format!("No such wallet: {id}")));
        }
    }
    Ok(services.ledger.balances(&actor.account_id, wallet_id).await?)
}
