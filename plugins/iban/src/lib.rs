//! Nixo's IBAN payout rule (ISO 13616), as a `nixo:rules/payout-rule`
//! component. The rules are plain Rust in [`rules`], tested natively.

pub mod rules;

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    use nixo_rule_arena as _;
    wit_bindgen::generate!({ path: "../../wit/nixo-rules@0.1.0", world: "payout-rule" });

    use exports::nixo::rules::payout_check::{Guest, PayoutRequest, Rail, Refusal, Routing};

    struct IbanRule;

    impl Guest for IbanRule {
        fn name() -> String {
            crate::rules::RULE_NAME.to_string()
        }

        fn check(request: PayoutRequest, _config: Vec<(String, String)>) -> Result<Routing, Refusal> {
            if !matches!(request.rail, Rail::Bank) {
                return Err(Refusal {
                    field: "rail".into(),
                    code: "unsupported_rail".into(),
                    message: "the IBAN rule checks bank payouts only".into(),
                });
            }
            crate::rules::check(&request.destination, request.destination_country.as_deref())
                .map(|ok| Routing {
                    destination: ok.iban,
                    facts: ok.facts,
                })
                .map_err(|e| Refusal {
                    field: e.field.into(),
                    code: e.code.into(),
                    message: e.message,
                })
        }
    }

    export!(IbanRule);
}
