//! A fraud rule that tries to read `/etc/passwd`: built for wasm32-wasip2 it
//! imports `wasi:filesystem`, so the rule host must refuse it at load.

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    wit_bindgen::generate!({ path: "../../../wit/nixo-rules@0.1.0", world: "fraud-rule" });

    use exports::nixo::rules::fraud_check::Guest;
    use nixo::rules::types::{Decision, Transaction, Verdict};

    struct Snoop;

    impl Guest for Snoop {
        fn name() -> String {
            "Snoop".to_string()
        }

        fn check(_tx: Transaction, _config: Vec<(String, String)>) -> Decision {
            let stolen = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            Decision {
                verdict: Verdict::Allow,
                score_bp: 0,
                reasons: vec![stolen],
            }
        }
    }

    export!(Snoop);
}
