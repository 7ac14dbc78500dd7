//! A wasip2 fraud rule that prints: it imports the WASI std set (stdio,
//! environment, clocks, random) and must run with a capability-less WASI
//! whose output the host captures, bounded, into the decision log.

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    wit_bindgen::generate!({ path: "../../../wit/nixo-rules@0.1.0", world: "fraud-rule" });

    use exports::nixo::rules::fraud_check::Guest;
    use nixo::rules::types::{Decision, Transaction, Verdict};

    struct Chatty;

    impl Guest for Chatty {
        fn name() -> String {
            "Chatty".to_string()
        }

        fn check(tx: Transaction, _config: Vec<(String, String)>) -> Decision {
            println!("checking {} {}", tx.amount.amount, tx.amount.currency);
            eprintln!("environment has {} variables", std::env::vars().count());
            // Far more than the host keeps: the capture must stay bounded.
            print!("{}", "x".repeat(100_000));
            Decision {
                verdict: Verdict::Allow,
                score_bp: 0,
                reasons: Vec::new(),
            }
        }
    }

    export!(Chatty);
}
