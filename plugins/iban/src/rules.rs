//! IBAN validation: country length and BBAN format from the SWIFT registry
//! (plus MA and PK, which registry-generated tables lack), then ISO 7064
//! MOD 97-10 check digits.

pub const RULE_NAME: &str = "IbanRule";

/// Country, total length, BBAN format: groups of `<count><class>` where the
/// class is `n` (digits), `a` (upper-case letters) or `c` (either).
const COUNTRIES: &[(&str, usize, &str)] = &[
    ("AD", 24, "4n4n12c"),
    ("AE", 23, "3n16n"),
    ("AT", 20, "5n11n"),
    ("BE", 16, "3n7n2n"),
    ("BH", 22, "4a14c"),
    ("CH", 21, "5n12c"),
    ("CY", 28, "3n5n16c"),
    ("CZ", 24, "4n6n10n"),
    ("DE", 22, "8n10n"),
    ("DK", 18, "4n9n1n"),
    ("EE", 20, "2n2n11n1n"),
    ("EG", 29, "4n4n17n"),
    ("ES", 24, "4n4n1n1n10n"),
    ("FI", 18, "3n11n"),
    ("FR", 27, "5n5n11c2n"),
    ("GB", 22, "4a6n8n"),
    ("GR", 27, "3n4n16c"),
    ("HR", 21, "7n10n"),
    ("HU", 28, "3n4n1n15n1n"),
    ("IE", 22, "4a6n8n"),
    ("IL", 23, "3n3n13n"),
    ("IT", 27, "1a5n5n12c"),
    ("JO", 30, "4a4n18c"),
    ("KW", 30, "4a22c"),
    ("LU", 20, "3n13c"),
    ("MA", 28, "24n"),
    ("MT", 31, "4a5n18c"),
    ("NL", 18, "4a10n"),
    ("NO", 15, "4n6n1n"),
    ("PK", 24, "4a16c"),
    ("PL", 28, "8n16n"),
    ("PT", 25, "4n4n11n2n"),
    ("QA", 29, "4a21c"),
    ("RO", 24, "4a16c"),
    ("SA", 24, "2n18c"),
    ("SE", 24, "3n16n1n"),
    ("SI", 19, "5n8n2n"),
    ("SK", 24, "4n6n10n"),
    ("TN", 24, "2n3n13n2n"),
    ("TR", 26, "5n1n16c"),
];

/// Longest input considered (an IBAN is at most 34 characters, plus spaces).
pub const INPUT_LEN_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub iban: String,
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

fn bban_matches(bban: &str, format: &str) -> bool {
    let mut chars = bban.chars();
    let mut count = 0usize;
    for f in format.chars() {
        if let Some(d) = f.to_digit(10) {
            count = count * 10 + d as usize;
            continue;
        }
        for _ in 0..count {
            let Some(c) = chars.next() else { return false };
            let ok = match f {
                'n' => c.is_ascii_digit(),
                'a' => c.is_ascii_uppercase(),
                _ => c.is_ascii_digit() || c.is_ascii_uppercase(),
            };
            if !ok {
                return false;
            }
        }
        count = 0;
    }
    chars.next().is_none()
}

/// ISO 7064 MOD 97-10 over the rearranged IBAN, folded digit by digit.
pub fn mod97(iban: &str) -> u32 {
    let rearranged = iban[4..].chars().chain(iban[..4].chars());
    let mut remainder = 0u32;
    for c in rearranged {
        let value = c.to_digit(36).unwrap_or(0);
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder
}

/// Validates an IBAN as a client may write it (spaces, lower case) and,
/// when given, that it belongs to `destination_country`.
pub fn check(input: &str, destination_country: Option<&str>) -> Result<Valid, Invalid> {
    if input.len() > INPUT_LEN_MAX {
        return Err(invalid("destination", "invalid_iban", "the IBAN is too long"));
    }
    let iban: String = input
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if iban.len() < 5 || !iban.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "destination",
            "invalid_iban",
            "an IBAN has only letters and digits",
        ));
    }
    let country = &iban[..2];
    let Some((_, length, format)) = COUNTRIES.iter().find(|(c, _, _)| *c == country) else {
        return Err(invalid(
            "destination",
            "unsupported_country",
            format!("IBANs of {country} are not supported"),
        ));
    };
    if iban.len() != *length {
        return Err(invalid(
            "destination",
            "invalid_iban",
            format!("{country} IBANs have {length} characters, this one has {}", iban.len()),
        ));
    }
    if !iban[2..4].chars().all(|c| c.is_ascii_digit()) || !bban_matches(&iban[4..], format) {
        return Err(invalid(
            "destination",
            "invalid_iban",
            format!("the account part does not fit the {country} format"),
        ));
    }
    if mod97(&iban) != 1 {
        return Err(invalid(
            "destination",
            "invalid_iban",
            "the IBAN check digits are wrong",
        ));
    }
    if let Some(expected) = destination_country
        && !expected.eq_ignore_ascii_case(country)
    {
        return Err(invalid(
            "destination_country",
            "country_mismatch",
            format!("the IBAN is from {country}, not {expected}"),
        ));
    }
    Ok(Valid {
        facts: vec![("country".into(), country.into()), ("bban".into(), iban[4..].into())],
        iban,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One valid IBAN per country of the table (each checked by mod 97 below).
    const VALID: &[&str] = &[
        "GB82WEST12345698765432",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "PK36SCBL0000001123456702",
        "MA64011519000001205000534921",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "BE68539007547034",
        "CH9300762011623852957",
        "AT611904300234573201",
        "SA0380000000608010167519",
        "AE070331234567890123456",
        "TR330006100519786457841326",
        "NO9386011117947",
        "PL61109010140000071219812874",
    ];

    #[test]
    fn every_valid_example_passes_and_is_normalised() {
        for iban in VALID {
            let ok = check(iban, None).unwrap_or_else(|e| panic!("{iban}: {e:?}"));
            assert_eq!(&ok.iban, iban);
        }
        let spaced = check("gb82 west 1234 5698 7654 32", Some("GB")).unwrap();
        assert_eq!(spaced.iban, "GB82WEST12345698765432");
        assert_eq!(spaced.facts[0], ("country".to_string(), "GB".to_string()));
    }

    /// MOD 97-10 catches every substitution of a digit by a digit and of a
    /// letter by a letter; a letter for a digit fails the BBAN format where
    /// the format says digits. (A letter for a digit inside an alphanumeric
    /// `c` group can collide: a limit of ISO 13616 itself.)
    #[test]
    fn every_single_character_corruption_of_the_same_class_fails() {
        for iban in VALID {
            for i in 0..iban.len() {
                let original = iban.as_bytes()[i];
                let replacements: &[char] = if original.is_ascii_digit() {
                    &['0', '1', '5', '9']
                } else {
                    &['A', 'K', 'Z']
                };
                for &replacement in replacements {
                    let mut bytes = iban.as_bytes().to_vec();
                    if bytes[i] == replacement as u8 {
                        continue;
                    }
                    bytes[i] = replacement as u8;
                    let corrupted = String::from_utf8(bytes).unwrap();
                    assert!(check(&corrupted, None).is_err(), "{corrupted} (from {iban}) passed");
                }
            }
        }
    }

    #[test]
    fn a_letter_where_the_format_wants_digits_fails() {
        assert!(check("DE89370400440532013A00", None).is_err());
        assert!(check("GB82WEST1234569876543X", None).is_err());
        assert!(check("GB82W3ST12345698765432", None).is_err());
    }

    #[test]
    fn refusals_name_the_field_and_reason() {
        assert_eq!(
            check("GB82WEST12345698765431", None).unwrap_err().message,
            "the IBAN check digits are wrong"
        );
        assert_eq!(check("GB82WEST1234569876543", None).unwrap_err().code, "invalid_iban");
        assert_eq!(
            check("KE82WEST12345698765432", None).unwrap_err().code,
            "unsupported_country"
        );
        let mismatch = check("GB82WEST12345698765432", Some("MA")).unwrap_err();
        assert_eq!(
            (mismatch.field, mismatch.code),
            ("destination_country", "country_mismatch")
        );
        assert!(check("GB82-WEST", None).is_err());
        assert!(check(&"9".repeat(200), None).is_err());
    }

    /// A valid IBAN for a country of the table: a BBAN filled in from its
    /// format, and the check digits computed for it.
    fn synthetic(country: &str, format: &str) -> String {
        let mut bban = String::new();
        let mut count = 0usize;
        for f in format.chars() {
            if let Some(d) = f.to_digit(10) {
                count = count * 10 + d as usize;
                continue;
            }
            for i in 0..count {
                let digit = char::from(b'0' + ((bban.len() * 7 + i) % 10) as u8);
                let letter = char::from(b'A' + ((bban.len() * 5 + i) % 26) as u8);
                bban.push(if f == 'a' || (f == 'c' && i % 3 == 1) {
                    letter
                } else {
                    digit
                });
            }
            count = 0;
        }
        let check = 98 - mod97(&format!("{country}00{bban}"));
        format!("{country}{check:02}{bban}")
    }

    #[test]
    fn every_country_of_the_table_validates_and_rejects_corruption() {
        for (country, _, format) in COUNTRIES {
            let iban = synthetic(country, format);
            assert!(check(&iban, Some(country)).is_ok(), "{iban}");
            for i in 2..iban.len() {
                let original = iban.as_bytes()[i];
                let replacement = if original.is_ascii_digit() {
                    if original == b'9' { b'0' } else { original + 1 }
                } else if original == b'Z' {
                    b'A'
                } else {
                    original + 1
                };
                let mut bytes = iban.as_bytes().to_vec();
                bytes[i] = replacement;
                let corrupted = String::from_utf8(bytes).unwrap();
                assert!(check(&corrupted, None).is_err(), "{corrupted} (from {iban}) passed");
            }
        }
    }

    #[test]
    fn table_lengths_match_their_formats() {
        for (country, length, format) in COUNTRIES {
            let mut total = 4;
            let mut count = 0;
            for f in format.chars() {
                match f.to_digit(10) {
                    Some(d) => count = count * 10 + d as usize,
                    None => {
                        total += count;
                        count = 0;
                    }
                }
            }
            assert_eq!(total, *length, "{country}");
        }
    }
}
