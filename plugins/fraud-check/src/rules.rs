//! The fraud rules themselves, independent of WebAssembly.
//!
//! Amounts arrive as exact decimal strings and are compared as integers
//! scaled by 10^4: no float is involved at any step.

/// Name shown in `rules_applied` ("FraudCheck: ALLOW").
pub const RULE_NAME: &str = "FraudCheck";

/// Fixed-point scale used to compare decimal amounts (4 decimal places).
const SCALE_DIGITS: usize = 4;

/// Score of a transaction that trips no rule (0.05).
const SCORE_BASE_BP: u16 = 500;
/// Score once the amount reaches 10 % of the review threshold.
const SCORE_ELEVATED_BP: u16 = 1_000;
/// Score once the amount reaches 50 % of the review threshold.
const SCORE_HIGH_BP: u16 = 3_000;
const SCORE_REVIEW_BP: u16 = 6_000;
const SCORE_DENY_THRESHOLD_BP: u16 = 9_500;
const SCORE_CERTAIN_BP: u16 = 10_000;

/// Transfers from one source in the last hour above which a human looks.
pub const VELOCITY_1H_REVIEW_COUNT: u32 = 20;

/// Destination countries that always go to review (FATF "call for action").
const HIGH_RISK_COUNTRIES: [&str; 3] = ["KP", "IR", "MM"];

/// Operator settings from the manifest's `[config]` table; every key is
/// optional and a value that does not parse keeps the default:
///
/// - `review_threshold.KES = "150000"`, `deny_threshold.KES = "1000000"`:
///   whole units, per currency;
/// - `velocity_1h_review_count = "20"`;
/// - `high_risk_countries = "KP,IR,MM"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    thresholds: Vec<(String, Option<u128>, Option<u128>)>,
    velocity_1h_review_count: Option<u32>,
    high_risk_countries: Option<Vec<String>>,
}

impl Config {
    pub fn from_pairs(pairs: &[(String, String)]) -> Config {
        let mut config = Config::default();
        for (key, value) in pairs {
            let value = value.trim();
            if let Some(currency) = key.strip_prefix("review_threshold.") {
                config.set_threshold(currency, value.parse().ok(), None);
            } else if let Some(currency) = key.strip_prefix("deny_threshold.") {
                config.set_threshold(currency, None, value.parse().ok());
            } else if key == "velocity_1h_review_count" {
                config.velocity_1h_review_count = value.parse().ok();
            } else if key == "high_risk_countries" {
                let list = value
                    .split(',')
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| c.len() == 2);
                config.high_risk_countries = Some(list.collect());
            }
        }
        config
    }

    fn set_threshold(&mut self, currency: &str, review: Option<u128>, deny: Option<u128>) {
        match self.thresholds.iter_mut().find(|(c, _, _)| c == currency) {
            Some(entry) => {
                entry.1 = review.or(entry.1);
                entry.2 = deny.or(entry.2);
            }
            None => self.thresholds.push((currency.to_string(), review, deny)),
        }
    }

    fn thresholds(&self, currency: &str) -> Thresholds {
        let mut t = thresholds(currency);
        if let Some((_, review, deny)) = self.thresholds.iter().find(|(c, _, _)| c == currency) {
            t.review_units = review.unwrap_or(t.review_units);
            t.deny_units = deny.unwrap_or(t.deny_units);
        }
        t
    }

    fn velocity_1h_review_count(&self) -> u32 {
        self.velocity_1h_review_count.unwrap_or(VELOCITY_1H_REVIEW_COUNT)
    }

    fn is_high_risk(&self, country: &str) -> bool {
        match &self.high_risk_countries {
            Some(list) => list.iter().any(|c| c == country),
            None => HIGH_RISK_COUNTRIES.contains(&country),
        }
    }
}

/// Review and deny thresholds in whole units of a currency.
struct Thresholds {
    review_units: u128,
    deny_units: u128,
}

fn thresholds(currency: &str) -> Thresholds {
    let (review_units, deny_units) = match currency {
        "KES" => (150_000, 1_000_000),
        "UGX" => (4_000_000, 30_000_000),
        "TZS" => (3_000_000, 20_000_000),
        "NGN" => (1_500_000, 10_000_000),
        "JPY" => (150_000, 1_500_000),
        "USD" | "EUR" | "GBP" | "CHF" => (10_000, 100_000),
        // Unknown to this rule: conservative, in the order of 1,000 USD.
        _ => (1_000, 10_000),
    };
    Thresholds {
        review_units,
        deny_units,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Review,
    Deny,
}

/// What the rule looks at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub is_transfer: bool,
    pub amount: &'a str,
    pub currency: &'a str,
    pub source: &'a str,
    pub destination: &'a str,
    pub destination_country: Option<&'a str>,
    pub account_age_days: u32,
    pub sandbox: bool,
    pub count_1h: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub score_bp: u16,
    pub reasons: Vec<&'static str>,
}

/// Parses a plain decimal string ("50", "50.00") into an integer scaled by
/// 10^4. More than four decimals, signs, exponents or junk give `None`.
pub fn parse_scaled(amount: &str) -> Option<u128> {
    let (whole, frac) = match amount.split_once('.') {
        Some((w, f)) => (w, f),
        None => (amount, ""),
    };
    if whole.is_empty() || whole.len() > 24 || frac.len() > SCALE_DIGITS {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if amount.ends_with('.') {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut frac_scaled: u128 = 0;
    for i in 0..SCALE_DIGITS {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u128::from(b - b'0'));
        frac_scaled = frac_scaled * 10 + digit;
    }
    whole
        .checked_mul(10u128.pow(SCALE_DIGITS as u32))?
        .checked_add(frac_scaled)
}

fn units_scaled(units: u128) -> u128 {
    units * 10u128.pow(SCALE_DIGITS as u32)
}

/// Applies every rule; the strictest verdict and the highest score win.
pub fn check(input: &Input<'_>, config: &Config) -> Outcome {
    let mut out = Outcome {
        verdict: Verdict::Allow,
        score_bp: SCORE_BASE_BP,
        reasons: Vec::new(),
    };
    let raise = |out: &mut Outcome, verdict: Verdict, score_bp: u16, reason: &'static str| {
        if verdict_rank(verdict) > verdict_rank(out.verdict) {
            out.verdict = verdict;
        }
        out.score_bp = out.score_bp.max(score_bp);
        out.reasons.push(reason);
    };

    let amount = match parse_scaled(input.amount) {
        Some(a) if a > 0 => a,
        _ => {
            raise(&mut out, Verdict::Deny, SCORE_CERTAIN_BP, "amount_not_positive");
            return out;
        }
    };
    if input.is_transfer && input.source == input.destination {
        raise(&mut out, Verdict::Deny, SCORE_CERTAIN_BP, "same_source_and_destination");
    }

    let limits = config.thresholds(input.currency);
    let review = units_scaled(limits.review_units);
    if amount >= units_scaled(limits.deny_units) {
        raise(
            &mut out,
            Verdict::Deny,
            SCORE_DENY_THRESHOLD_BP,
            "amount_above_deny_threshold",
        );
    } else if amount >= review {
        raise(
            &mut out,
            Verdict::Review,
            SCORE_REVIEW_BP,
            "amount_above_review_threshold",
        );
    } else if amount * 2 >= review {
        out.score_bp = out.score_bp.max(SCORE_HIGH_BP);
    } else if amount * 10 >= review {
        out.score_bp = out.score_bp.max(SCORE_ELEVATED_BP);
    }

    if !input.sandbox && input.account_age_days == 0 && amount * 10 >= review {
        raise(&mut out, Verdict::Review, SCORE_REVIEW_BP, "new_account_large_amount");
    }
    if input.count_1h >= config.velocity_1h_review_count() {
        raise(&mut out, Verdict::Review, SCORE_REVIEW_BP, "velocity_1h_exceeded");
    }
    if let Some(country) = input.destination_country
        && config.is_high_risk(country)
    {
        raise(
            &mut out,
            Verdict::Review,
            SCORE_REVIEW_BP,
            "high_risk_destination_country",
        );
    }
    out
}

fn verdict_rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Review => 1,
        Verdict::Deny => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(amount: &'static str) -> Input<'static> {
        Input {
            is_transfer: true,
            amount,
            currency: "KES",
            source: "101",
            destination: "102",
            destination_country: None,
            account_age_days: 30,
            sandbox: false,
            count_1h: 0,
        }
    }

    #[test]
    fn small_transfer_is_allowed_with_base_score() {
        let out = check(&transfer("50.00"), &Config::default());
        assert_eq!(out.verdict, Verdict::Allow);
        assert_eq!(out.score_bp, 500);
        assert!(out.reasons.is_empty());
    }

    #[test]
    fn score_rises_with_amount_before_review() {
        assert_eq!(check(&transfer("15000"), &Config::default()).score_bp, 1_000);
        assert_eq!(check(&transfer("75000"), &Config::default()).score_bp, 3_000);
        assert_eq!(
            check(&transfer("149999.99"), &Config::default()).verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn review_and_deny_thresholds_are_inclusive() {
        let review = check(&transfer("150000"), &Config::default());
        assert_eq!(review.verdict, Verdict::Review);
        assert_eq!(review.reasons, ["amount_above_review_threshold"]);
        let deny = check(&transfer("1000000.00"), &Config::default());
        assert_eq!(deny.verdict, Verdict::Deny);
        assert_eq!(deny.score_bp, 9_500);
    }

    #[test]
    fn same_wallet_is_denied() {
        let mut tx = transfer("10");
        tx.destination = "101";
        let out = check(&tx, &Config::default());
        assert_eq!(out.verdict, Verdict::Deny);
        assert_eq!(out.reasons, ["same_source_and_destination"]);
    }

    #[test]
    fn zero_negative_and_malformed_amounts_are_denied() {
        for bad in ["0", "0.00", "-5", "1e3", "", "1.", ".5", "12.34567", "abc"] {
            let out = check(&transfer(bad), &Config::default());
            assert_eq!(out.verdict, Verdict::Deny, "amount {bad:?}");
            assert_eq!(out.score_bp, 10_000);
        }
    }

    #[test]
    fn new_account_large_amount_goes_to_review_but_not_in_sandbox() {
        let mut tx = transfer("20000");
        tx.account_age_days = 0;
        assert_eq!(check(&tx, &Config::default()).verdict, Verdict::Review);
        tx.sandbox = true;
        assert_eq!(check(&tx, &Config::default()).verdict, Verdict::Allow);
    }

    #[test]
    fn velocity_and_country_rules_review() {
        let mut tx = transfer("10");
        tx.count_1h = VELOCITY_1H_REVIEW_COUNT;
        assert_eq!(check(&tx, &Config::default()).reasons, ["velocity_1h_exceeded"]);
        let mut tx = transfer("10");
        tx.destination_country = Some("KP");
        assert_eq!(check(&tx, &Config::default()).verdict, Verdict::Review);
    }

    #[test]
    fn strictest_verdict_and_highest_score_win() {
        let mut tx = transfer("2000000");
        tx.count_1h = 50;
        let out = check(&tx, &Config::default());
        assert_eq!(out.verdict, Verdict::Deny);
        assert_eq!(out.score_bp, 9_500);
        assert_eq!(out.reasons.len(), 2);
    }

    #[test]
    fn thresholds_velocity_and_countries_are_configurable() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let config = Config::from_pairs(&pairs(&[
            ("review_threshold.KES", "1000"),
            ("deny_threshold.KES", "5000"),
            ("velocity_1h_review_count", "3"),
            ("high_risk_countries", "ng, gh"),
            ("unknown", "ignored"),
        ]));
        assert_eq!(check(&transfer("999"), &config).verdict, Verdict::Allow);
        assert_eq!(check(&transfer("1000"), &config).verdict, Verdict::Review);
        assert_eq!(check(&transfer("5000"), &config).verdict, Verdict::Deny);
        let mut tx = transfer("10");
        tx.count_1h = 3;
        assert_eq!(check(&tx, &config).reasons, ["velocity_1h_exceeded"]);
        let mut tx = transfer("10");
        tx.destination_country = Some("NG");
        assert_eq!(check(&tx, &config).verdict, Verdict::Review);
        tx.destination_country = Some("KP");
        assert_eq!(
            check(&tx, &config).verdict,
            Verdict::Allow,
            "the list replaces the default"
        );
        let bad = Config::from_pairs(&pairs(&[("review_threshold.KES", "lots")]));
        assert_eq!(
            check(&transfer("150000"), &bad).verdict,
            Verdict::Review,
            "unparsable keeps the default"
        );
    }

    #[test]
    fn parse_scaled_is_exact() {
        assert_eq!(parse_scaled("50.00"), Some(500_000));
        assert_eq!(parse_scaled("0.0001"), Some(1));
        assert_eq!(parse_scaled("123"), Some(1_230_000));
    }
}
