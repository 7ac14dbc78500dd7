//! `pain.001.001.09` (CustomerCreditTransferInitiation): write one from a
//! [`CreditTransfer`], and read one back with the checks a bank's schema
//! validation makes (the sandbox uses the reader).

use super::{CreditTransfer, Debtor};
use crate::money::Currency;
use crate::providers::xml::{self, Element};

pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";
pub const MESSAGE_NAME: &str = "pain.001.001.09";
/// `Max35Text` (ids), `Max140Text` (names, remittance).
pub const ID_LEN_MAX: usize = 35;
pub const NAME_LEN_MAX: usize = 140;

fn amount_text(minor: i64, currency: Currency) -> String {
    currency.minor_to_text(minor)
}

/// The document for one transfer, in the schema's element order.
pub fn render(t: &CreditTransfer) -> String {
    let amount = amount_text(t.amount_minor, t.currency);
    let mut payment = Element::new("PmtInf")
        .child(Element::leaf("PmtInfId", &t.end_to_end_id))
        .child(Element::leaf("PmtMtd", "TRF"))
        .child(Element::leaf("NbOfTxs", "1"))
        .child(Element::leaf("CtrlSum", &amount));
    if t.sepa {
        payment =
            payment.child(Element::new("PmtTpInf").child(Element::new("SvcLvl").child(Element::leaf("Cd", "SEPA"))));
    }
    payment = payment
        .child(Element::new("ReqdExctnDt").child(Element::leaf("Dt", &t.execution_date)))
        .child(Element::new("Dbtr").child(Element::leaf("Nm", &t.debtor.name)))
        .child(Element::new("DbtrAcct").child(Element::new("Id").child(Element::leaf("IBAN", &t.debtor.iban))))
        .child(Element::new("DbtrAgt").child(Element::new("FinInstnId").child(Element::leaf("BICFI", &t.debtor.bic))));
    if t.sepa {
        payment = payment.child(Element::leaf("ChrgBr", "SLEV"));
    }
    let transaction = Element::new("CdtTrfTxInf")
        .child(Element::new("PmtId").child(Element::leaf("EndToEndId", &t.end_to_end_id)))
        .child(Element::new("Amt").child(Element::leaf("InstdAmt", &amount).attr("Ccy", t.currency.code)))
        .child(Element::new("Cdtr").child(Element::leaf("Nm", &t.creditor_name)))
        .child(Element::new("CdtrAcct").child(Element::new("Id").child(Element::leaf("IBAN", &t.creditor_iban))))
        .child(Element::new("RmtInf").child(Element::leaf("Ustrd", &t.remittance)));
    payment = payment.child(transaction);
    let header = Element::new("GrpHdr")
        .child(Element::leaf("MsgId", &t.message_id))
        .child(Element::leaf("CreDtTm", &t.created_at))
        .child(Element::leaf("NbOfTxs", "1"))
        .child(Element::leaf("CtrlSum", &amount))
        .child(Element::new("InitgPty").child(Element::leaf("Nm", &t.initiating_party)));
    Element::new("Document")
        .attr("xmlns", NAMESPACE)
        .child(Element::new("CstmrCdtTrfInitn").child(header).child(payment))
        .to_document()
}

/// Why a document is not a valid `pain.001.001.09` (an ISO 20022 reason
/// code and a description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// FF01 (invalid file format), AC01 (incorrect account number), AM02,
    /// AM12 (amount), CH16 (element content).
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

fn required<'a>(e: &'a Element, path: &[&str]) -> Result<&'a str, Invalid> {
    e.text_at(path)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("FF01", format!("missing element {}", path.join("/"))))
}

fn max_text<'a>(e: &'a Element, path: &[&str], max: usize) -> Result<&'a str, Invalid> {
    let text = required(e, path)?;
    if text.chars().count() > max {
        return Err(invalid(
            "CH16",
            format!("{} is longer than {max} characters", path.join("/")),
        ));
    }
    Ok(text)
}

fn date_ok(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// A decimal with at most 5 fraction digits (ISO `ActiveOrHistoricCurrencyAndAmount`).
fn decimal_ok(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.len() <= 5
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && !(text.contains('.') && fraction.is_empty())
}

/// One transaction of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTransaction {
    pub end_to_end_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub creditor_name: String,
    pub creditor_iban: String,
}

/// A parsed message: group header and payment information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub message_id: String,
    pub payment_id: String,
    pub debtor: Debtor,
    pub transactions: Vec<ParsedTransaction>,
}

/// Reads and validates a message as a bank would.
pub fn parse(document: &str) -> Result<Parsed, Invalid> {
    let root = xml::parse(document).map_err(|e| invalid("FF01", e.to_string()))?;
    if root.name != "Document" || root.attribute("xmlns") != Some(NAMESPACE) {
        return Err(invalid(
            "FF01",
            format!("the root must be Document in the {NAMESPACE} namespace"),
        ));
    }
    let initiation = root
        .get("CstmrCdtTrfInitn")
        .ok_or_else(|| invalid("FF01", "missing element CstmrCdtTrfInitn"))?;
    let message_id = max_text(initiation, &["GrpHdr", "MsgId"], ID_LEN_MAX)?.to_string();
    let created = required(initiation, &["GrpHdr", "CreDtTm"])?;
    if chrono::DateTime::parse_from_rfc3339(created).is_err() {
        return Err(invalid("FF01", "GrpHdr/CreDtTm is not an ISO date-time with offset"));
    }
    let count: usize = required(initiation, &["GrpHdr", "NbOfTxs"])?
        .parse()
        .map_err(|_| invalid("FF01", "GrpHdr/NbOfTxs is not a number"))?;
    let control_sum = required(initiation, &["GrpHdr", "CtrlSum"])?.to_string();
    max_text(initiation, &["GrpHdr", "InitgPty", "Nm"], NAME_LEN_MAX)?;
    let payments: Vec<&Element> = initiation.all("PmtInf").collect();
    let [payment] = payments.as_slice() else {
        return Err(invalid("FF01", "exactly one PmtInf is accepted per message"));
    };
    let payment_id = max_text(payment, &["PmtInfId"], ID_LEN_MAX)?.to_string();
    if required(payment, &["PmtMtd"])? != "TRF" {
        return Err(invalid("FF01", "PmtMtd must be TRF"));
    }
    if !date_ok(required(payment, &["ReqdExctnDt", "Dt"])?) {
        return Err(invalid("FF01", "ReqdExctnDt/Dt is not a date"));
    }
    let debtor = Debtor {
        name: max_text(payment, &["Dbtr", "Nm"], NAME_LEN_MAX)?.to_string(),
        iban: required(payment, &["DbtrAcct", "Id", "IBAN"])?.to_string(),
        bic: required(payment, &["DbtrAgt", "FinInstnId", "BICFI"])?.to_string(),
    };
    if !crate::providers::iban_ok(&debtor.iban) {
        return Err(invalid("AC02", "the debtor IBAN is invalid"));
    }
    let mut transactions = Vec::new();
    let mut sum_by_currency: Vec<(Currency, i64)> = Vec::new();
    for tx in payment.all("CdtTrfTxInf") {
        let amount = tx
            .at(&["Amt", "InstdAmt"])
            .ok_or_else(|| invalid("FF01", "missing element Amt/InstdAmt"))?;
        let code = amount.attribute("Ccy").unwrap_or_default();
        let currency =
            Currency::from_code(code).ok_or_else(|| invalid("AM11", format!("unknown currency '{code}'")))?;
        let text = amount.text.trim();
        if !decimal_ok(text) {
            return Err(invalid("AM12", format!("'{text}' is not a valid amount")));
        }
        let amount_minor = currency
            .text_to_minor(text)
            .filter(|m| *m > 0)
            .ok_or_else(|| invalid("AM12", format!("'{text}' is not a valid {code} amount")))?;
        let creditor_iban = required(tx, &["CdtrAcct", "Id", "IBAN"])?.to_string();
        if !crate::providers::iban_ok(&creditor_iban) {
            return Err(invalid("AC01", "the creditor IBAN is invalid"));
        }
        match sum_by_currency.iter_mut().find(|(c, _)| *c == currency) {
            Some((_, sum)) => *sum += amount_minor,
            None => sum_by_currency.push((currency, amount_minor)),
        }
        transactions.push(ParsedTransaction {
            end_to_end_id: max_text(tx, &["PmtId", "EndToEndId"], ID_LEN_MAX)?.to_string(),
            amount_minor,
            currency,
            creditor_name: max_text(tx, &["Cdtr", "Nm"], NAME_LEN_MAX)?.to_string(),
            creditor_iban,
        });
    }
    if transactions.is_empty() || transactions.len() != count {
        return Err(invalid("AM18", "NbOfTxs does not match the transactions"));
    }
    if let [(currency, sum)] = sum_by_currency.as_slice() {
        let declared = currency.text_to_minor(&control_sum);
        if declared != Some(*sum) {
            return Err(invalid("AM10", "CtrlSum does not match the sum of the amounts"));
        }
    }
    Ok(Parsed {
        message_id,
        payment_id,
        debtor,
        transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer() -> CreditTransfer {
        CreditTransfer {
            message_id: "NIXO-pyt_1A2B3C4D5E6F".into(),
            created_at: "2025-01-26T12:00:00+03:00".into(),
            initiating_party: "Nixo Finance".into(),
            end_to_end_id: "pyt_1A2B3C4D5E6F".into(),
            execution_date: "2025-01-27".into(),
            debtor: Debtor {
                name: "Nixo Finance Ltd".into(),
                iban: "GB82WEST12345698765432".into(),
                bic: "WESTGB2L".into(),
            },
            amount_minor: 25_000,
            currency: Currency::from_code("EUR").unwrap(),
            creditor_name: "Test User & Co <x>".into(),
            creditor_iban: "DE89370400440532013000".into(),
            remittance: "Nixo payout pyt_1A2B3C4D5E6F".into(),
            sepa: true,
        }
    }

    #[test]
    fn a_written_message_reads_back_with_the_same_facts() {
        let xml = render(&transfer());
        assert!(xml.contains("<InstdAmt Ccy=\"EUR\">250.00</InstdAmt>"));
        assert!(xml.contains("<Cd>SEPA</Cd>") && xml.contains("<ChrgBr>SLEV</ChrgBr>"));
        assert!(xml.contains("Test User &amp; Co &lt;x&gt;"));
        let parsed = parse(&xml).unwrap();
        assert_eq!(parsed.message_id, "NIXO-pyt_1A2B3C4D5E6F");
        assert_eq!(parsed.transactions[0].creditor_name, "Test User & Co <x>");
        assert_eq!(parsed.transactions[0].amount_minor, 25_000);
    }

    #[test]
    fn non_sepa_leaves_out_the_service_level() {
        let mut t = transfer();
        t.sepa = false;
        t.currency = Currency::from_code("USD").unwrap();
        let xml = render(&t);
        assert!(!xml.contains("SEPA") && !xml.contains("ChrgBr"));
        parse(&xml).unwrap();
    }

    #[test]
    fn schema_level_faults_are_named() {
        let good = render(&transfer());
        let cases = [
            (good.replace("pain.001.001.09", "pain.001.001.03"), "FF01"),
            (
                good.replacen("<CtrlSum>250.00</CtrlSum>", "<CtrlSum>251.00</CtrlSum>", 1),
                "AM10",
            ),
            (good.replace("DE89370400440532013000", "DE89370400440532013001"), "AC01"),
            (good.replace(">250.00</InstdAmt>", ">250.001</InstdAmt>"), "AM12"),
            (good.replace("<PmtMtd>TRF</PmtMtd>", "<PmtMtd>CHK</PmtMtd>"), "FF01"),
            (good.replace("</Document>", ""), "FF01"),
            ("<!DOCTYPE x [<!ENTITY a \"b\">]><Document/>".to_string(), "FF01"),
        ];
        for (xml, code) in cases {
            assert_eq!(parse(&xml).unwrap_err().code, code, "{xml}");
        }
    }
}
