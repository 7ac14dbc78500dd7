//! A deliberately broken fraud rule, for the host's sandbox tests. The
//! transaction's `behaviour` metadata picks the misbehaviour; without it the
//! rule allows, so a host can be shown to recover and serve normally.
//! `remember` reports what earlier calls in the same instance left behind
//! (for the host's instance-isolation tests); the `trap_on_source` config
//! key makes it trap for one source account.

/// The misbehaviours this fixture can act out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Allow,
    InfiniteLoop,
    MemoryBomb,
    DeepRecursion,
    Trap,
    HugeOutput,
    Remember,
}

pub fn behaviour(metadata: &[(String, String)]) -> Behaviour {
    match metadata.iter().find(|(k, _)| k == "behaviour").map(|(_, v)| v.as_str()) {
        Some("loop") => Behaviour::InfiniteLoop,
        Some("memory") => Behaviour::MemoryBomb,
        Some("recursion") => Behaviour::DeepRecursion,
        Some("trap") => Behaviour::Trap,
        Some("huge-output") => Behaviour::HugeOutput,
        Some("remember") => Behaviour::Remember,
        _ => Behaviour::Allow,
    }
}

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm {
    wit_bindgen::generate!({ path: "../../../wit/nixo-rules@0.1.0", world: "fraud-rule" });

    use super::Behaviour;
    use exports::nixo::rules::fraud_check::Guest;
    use nixo::rules::types::{Decision, Transaction, Verdict};

    struct Hostile;

    /// Calls this instance has served, and the source of the last one.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static LAST_SOURCE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

    #[inline(never)]
    #[allow(unconditional_recursion)]
    fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
        sink[(depth % 64) as usize] = depth;
        recurse(depth + 1, sink) + sink[((depth + 1) % 64) as usize]
    }

    impl Guest for Hostile {
        fn name() -> String {
            "Hostile".to_string()
        }

        fn check(tx: Transaction, config: Vec<(String, String)>) -> Decision {
            let mut reasons = Vec::new();
            let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let previous = std::mem::replace(&mut *LAST_SOURCE.lock().unwrap(), tx.source.clone());
            if config.iter().any(|(k, v)| k == "trap_on_source" && *v == tx.source) {
                panic!("this rule traps for source {} on purpose", tx.source);
            }
            match super::behaviour(&tx.metadata) {
                Behaviour::Allow => {}
                Behaviour::InfiniteLoop => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Behaviour::MemoryBomb => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        // Reserve without touching: memory grows, fuel barely moves.
                        let mut chunk = Vec::<u8>::with_capacity(1 << 20);
                        chunk.push(1);
                        hoard.push(chunk);
                        std::hint::black_box(&hoard);
                    }
                }
                Behaviour::DeepRecursion => {
                    let mut sink = [0u64; 64];
                    reasons.push(recurse(0, &mut sink).to_string());
                }
                Behaviour::Trap => panic!("this rule traps on purpose"),
                Behaviour::HugeOutput => {
                    reasons = (0..1_000).map(|i| format!("reason-{i}")).collect();
                }
                Behaviour::Remember => {
                    reasons = vec![format!("calls:{calls}"), format!("previous:{previous}")];
                }
            }
            Decision {
                verdict: Verdict::Allow,
                score_bp: 0,
                reasons,
            }
        }
    }

    export!(Hostile);
}
