//! Nixo's M-Pesa payout rule, as a `nixo:rules/payout-rule` component. The
//! rules are plain Rust in [`rules`], tested natively.

pub mod rules;

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    use nixo_rule_arena as _;
    wit_bindgen::generate!({ path: "../../wit/nixo-rules@0.1.0", world: "payout-rule" });

    use exports::nixo::rules::payout_check::{Guest, PayoutRequest, Rail, Refusal, Routing};

    struct MpesaRule;

    impl Guest for MpesaRule {
        fn name() -> String {
            crate::rules::RULE_NAME.to_string()
        }

        fn check(request: PayoutRequest, config: Vec<(String, String)>) -> Result<Routing, Refusal> {
            if !matches!(request.rail, Rail::Mpesa) {
                return Err(Refusal {
                    field: "rail".into(),
                    code: "unsupported_rail".into(),
                    message: "the M-Pesa rule checks M-Pesa payouts only".into(),
                });
            }
            let input = crate::rules::Input {
                destination: &request.destination,
                amount: &request.amount.amount,
                currency: &request.amount.currency,
                destination_country: request.destination_country.as_deref(),
                sent_today: &request.sent_today,
            };
            let limits = crate::rules::Limits::from_config(&config);
            crate::rules::check(&input, &limits)
                .map(|ok| Routing {
                    destination: ok.msisdn,
                    facts: ok.facts,
                })
                .map_err(|e| Refusal {
                    field: e.field.into(),
                    code: e.code.into(),
                    message: e.message,
                })
        }
    }

    export!(MpesaRule);
}
