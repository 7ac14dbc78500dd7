//! M-Pesa (Safaricom Daraja B2C) payout checks: Kenyan MSISDN, whole
//! shillings, per-transaction and daily limits.

pub const RULE_NAME: &str = "MpesaRule";

/// Smallest B2C payout, in KES.
pub const AMOUNT_MIN_KES: u64 = 10;
/// Largest single payout, in KES (Safaricom's 2025 per-transaction limit).
pub const AMOUNT_PER_TRANSACTION_MAX_KES: u64 = 250_000;
/// Largest total per day from one source, in KES.
pub const AMOUNT_PER_DAY_MAX_KES: u64 = 500_000;

/// The rail's limits in KES; manifest `[config]` keys `min_kes`,
/// `per_transaction_max_kes` and `per_day_max_kes` override the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_kes: u64,
    pub per_transaction_max_kes: u64,
    pub per_day_max_kes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_kes: AMOUNT_MIN_KES,
            per_transaction_max_kes: AMOUNT_PER_TRANSACTION_MAX_KES,
            per_day_max_kes: AMOUNT_PER_DAY_MAX_KES,
        }
    }
}

impl Limits {
    /// Reads overrides; unparsable values keep the default.
    pub fn from_config(config: &[(String, String)]) -> Limits {
        let mut limits = Limits::default();
        for (key, value) in config {
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            match key.as_str() {
                "min_kes" => limits.min_kes = value,
                "per_transaction_max_kes" => limits.per_transaction_max_kes = value,
                "per_day_max_kes" => limits.per_day_max_kes = value,
                _ => {}
            }
        }
        limits
    }
}

#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub destination: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub destination_country: Option<&'a str>,
    pub sent_today: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub msisdn: String,
    pub facts: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        code,
        message: message.into(),
    }
}

/// Normalises `07…`, `01…`, `+254…`, `254…` and `7…` forms (spaces and
/// dashes allowed) to `254XXXXXXXXX`, and checks it is a Kenyan mobile
/// number (`^254(7\d{8}|1[01]\d{7})$`). The prefix does not tell the network
/// (number portability), so no operator is inferred.
pub fn normalise_msisdn(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let national = if let Some(rest) = digits.strip_prefix("254") {
        rest
    } else if let Some(rest) = digits.strip_prefix('0') {
        rest
    } else {
        digits
    };
    let valid =
        national.len() == 9 && (national.starts_with('7') || national.starts_with("10") || national.starts_with("11"));
    valid.then(|| format!("254{national}"))
}

/// Whole shillings from a decimal string ("2500", "2500.00"); `None` for
/// fractions, signs or junk.
pub fn whole_shillings(amount: &str) -> Option<u64> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits_only = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || whole.len() > 15 || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    if fraction.chars().any(|c| c != '0') {
        return None;
    }
    whole.parse().ok()
}

pub fn check(input: &Input<'_>, limits: &Limits) -> Result<Valid, Invalid> {
    let msisdn = normalise_msisdn(input.destination).ok_or_else(|| {
        invalid(
            "destination",
            "invalid_msisdn",
            "not a Kenyan mobile number (07XXXXXXXX, 01XXXXXXXX or +2547XXXXXXXX)",
        )
    })?;
    if let Some(country) = input.destination_country
        && !country.eq_ignore_ascii_case("KE")
    {
        return Err(invalid(
            "destination_country",
            "country_mismatch",
            "M-Pesa payouts go to Kenya (KE)",
        ));
    }
    if input.currency != "KES" {
        return Err(invalid(
            "currency",
            "unsupported_currency",
            "M-Pesa pays out in KES only",
        ));
    }
    let amount = whole_shillings(input.amount)
        .ok_or_else(|| invalid("amount", "whole_shillings_only", "M-Pesa moves whole shillings only"))?;
    if amount < limits.min_kes {
        return Err(invalid(
            "amount",
            "amount_too_small",
            format!("the smallest M-Pesa payout is {} KES", limits.min_kes),
        ));
    }
    if amount > limits.per_transaction_max_kes {
        return Err(invalid(
            "amount",
            "amount_above_limit",
            format!("M-Pesa payouts are at most {} KES each", limits.per_transaction_max_kes),
        ));
    }
    let sent_today = whole_shillings(input.sent_today.split('.').next().unwrap_or("0")).unwrap_or(u64::MAX);
    if sent_today.saturating_add(amount) > limits.per_day_max_kes {
        return Err(invalid(
            "amount",
            "daily_limit_exceeded",
            format!(
                "this payout would take today's M-Pesa total above {} KES",
                limits.per_day_max_kes
            ),
        ));
    }
    Ok(Valid {
        facts: vec![
            ("rail".into(), "mpesa_b2c".into()),
            ("command_id".into(), "BusinessPayment".into()),
            ("amount_kes".into(), amount.to_string()),
        ],
        msisdn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(destination: &str, amount: &str) -> Input<'static> {
        Input {
            destination: Box::leak(destination.to_string().into_boxed_str()),
            amount: Box::leak(amount.to_string().into_boxed_str()),
            currency: "KES",
            destination_country: Some("KE"),
            sent_today: "0",
        }
    }

    fn check_default(input: &Input<'_>) -> Result<Valid, Invalid> {
        check(input, &Limits::default())
    }

    #[test]
    fn limits_come_from_config() {
        let config = [
            ("per_transaction_max_kes".to_string(), "150000".to_string()),
            ("x".into(), "y".into()),
        ];
        let limits = Limits::from_config(&config);
        assert_eq!(limits.per_transaction_max_kes, 150_000);
        assert_eq!(limits.per_day_max_kes, AMOUNT_PER_DAY_MAX_KES);
        assert_eq!(
            check(&input("0712345678", "150001"), &limits).unwrap_err().code,
            "amount_above_limit"
        );
    }

    #[test]
    fn every_written_form_normalises() {
        for form in [
            "0712345678",
            "+254712345678",
            "254712345678",
            "712345678",
            "0712 345 678",
            "+254-712-345-678",
        ] {
            assert_eq!(normalise_msisdn(form).as_deref(), Some("254712345678"), "{form}");
        }
        assert_eq!(normalise_msisdn("0110123456").as_deref(), Some("254110123456"));
        assert_eq!(
            normalise_msisdn("254708374149").as_deref(),
            Some("254708374149"),
            "Daraja's test number"
        );
    }

    #[test]
    fn non_kenyan_mobile_numbers_are_refused() {
        for bad in [
            "",
            "0612345678",
            "25471234567",
            "2547123456789",
            "+255712345678",
            "0712a45678",
            "0120123456",
            "07123456789",
        ] {
            assert_eq!(normalise_msisdn(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_single_digit_corruption_of_the_prefix_fails() {
        let valid = "254712345678";
        for i in 0..4 {
            for d in '0'..='9' {
                let mut chars: Vec<char> = valid.chars().collect();
                if chars[i] == d || (i == 3 && d == '1') {
                    continue;
                }
                chars[i] = d;
                let corrupted: String = chars.into_iter().collect();
                assert!(normalise_msisdn(&corrupted).is_none(), "{corrupted}");
            }
        }
    }

    #[test]
    fn amounts_are_whole_shillings_within_limits() {
        assert_eq!(
            check_default(&input("0712345678", "2500")).unwrap().msisdn,
            "254712345678"
        );
        assert!(check_default(&input("0712345678", "2500.00")).is_ok());
        assert_eq!(
            check_default(&input("0712345678", "2500.50")).unwrap_err().code,
            "whole_shillings_only"
        );
        assert_eq!(
            check_default(&input("0712345678", "9")).unwrap_err().code,
            "amount_too_small"
        );
        assert!(check_default(&input("0712345678", "250000")).is_ok());
        assert_eq!(
            check_default(&input("0712345678", "250001")).unwrap_err().code,
            "amount_above_limit"
        );
        let mut near_limit = input("0712345678", "100000");
        near_limit.sent_today = "400001.00";
        assert_eq!(check_default(&near_limit).unwrap_err().code, "daily_limit_exceeded");
    }

    #[test]
    fn other_countries_and_currencies_are_refused() {
        let mut other = input("0712345678", "100");
        other.destination_country = Some("UG");
        assert_eq!(check_default(&other).unwrap_err().field, "destination_country");
        let mut usd = input("0712345678", "100");
        usd.currency = "USD";
        assert_eq!(check_default(&usd).unwrap_err().field, "currency");
    }
}
