//! Business operations, between the HTTP handlers and the ledger.
//!
//! A service takes a typed command, runs the business rules, the rule
//! plugins and the ledger in that order, and returns a typed result or a
//! [`ServiceError`]. It never sees an HTTP type: `api/` parses and renders,
//! and maps [`ServiceError`] to a status in one place (`error.rs`).

pub mod accounts;
pub mod async_payments;
pub mod balances;
pub mod decisions;
pub mod deposits;
pub mod kyc;
pub mod payments;
pub mod payouts;
pub mod reviews;
pub mod risk;
pub mod transactions;
pub mod transfers;
pub mod webhooks;
pub mod withdrawals;

use crate::clock::Clock;
use crate::ledger::{Environment, Ledger, LedgerError};
use crate::rules::RuleHost;
use crate::rules::decision_log::DecisionLog;
use std::borrow::Cow;
use std::sync::Arc;

/// Who a service acts for: the account and environment the key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub account_id: String,
    pub environment: Environment,
}

/// What every service needs.
#[derive(Clone)]
pub struct Services {
    pub ledger: Ledger,
    pub rules: Arc<RuleHost>,
    pub decisions: DecisionLog,
    pub clock: Clock,
    /// The rails payouts travel on.
    pub rails: Arc<payouts::rails::PayoutRails>,
    /// Wakes this process's job worker after an enqueue.
    pub jobs: crate::jobs::runner::Waker,
    /// Webhook delivery (configuration, client, sealed secrets).
    pub webhooks: Arc<crate::webhooks::delivery::Delivery>,
    /// Transaction limits by KYC level.
    pub limits: Arc<crate::limits::Limits>,
    /// The KYC provider verification calls.
    pub kyc: Arc<dyn crate::providers::kyc::KycProvider>,
    /// Seals identity numbers at rest.
    pub personal: crate::webhooks::Sealer,
}

type Text = Cow<'static, str>;

/// Why a service refused or failed, with a stable machine code per case.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A parameter is wrong (`field` names it).
    #[error("{message}")]
    Invalid { field: Text, message: Text },
    /// Something named does not exist, or is not the actor's.
    #[error("{message}")]
    NotFound { field: Option<Text>, message: Text },
    /// The parameters were valid but the money could not move.
    #[error("{message}")]
    InsufficientFunds { field: Text, message: Text },
    /// An idempotency key was used before for a different operation.
    #[error("{message}")]
    IdempotencyKeyReused { message: Text },
    /// The actor may not do this (`code` says why; `field` names the
    /// parameter at fault, such as `amount` for a limit).
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        field: Option<Text>,
        message: Text,
    },
    /// A rail or provider refused the request, or could not be reached
    /// (`retryable`: try again later).
    #[error("{message}")]
    Provider { retryable: bool, message: Text },
    /// The operation conflicts with the resource's state (`code` says how).
    #[error("{message}")]
    Conflict { code: &'static str, message: Text },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: impl Into<Text>, message: impl Into<Text>) -> Self {
        ServiceError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(field: impl Into<Text>, message: impl Into<Text>) -> Self {
        ServiceError::NotFound {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(err: sqlx::Error) -> Self {
        ServiceError::Internal(anyhow::Error::new(err))
    }
}

impl From<nixo_api::schema::FieldError> for ServiceError {
    fn from(err: nixo_api::schema::FieldError) -> Self {
        ServiceError::invalid(err.field, err.message)
    }
}

impl From<LedgerError> for ServiceError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::Db(err) => err.into(),
            other => ServiceError::Internal(anyhow::Error::new(other)),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
