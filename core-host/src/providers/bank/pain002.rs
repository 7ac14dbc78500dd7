//! `pain.002.001.10` (CustomerPaymentStatusReport): the bank's answer to a
//! `pain.001.001.09`. Read by Nixo, written by the sandbox bank.

use super::{StatusReport, TransactionStatus};
use crate::providers::xml::{self, Element};

pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10";

fn reason(code: &str, info: Option<&str>) -> Element {
    let mut e = Element::new("StsRsnInf").child(Element::new("Rsn").child(Element::leaf("Cd", code)));
    if let Some(info) = info {
        e = e.child(Element::leaf("AddtlInf", info));
    }
    e
}

/// The document, in the schema's element order.
pub fn render(r: &StatusReport) -> String {
    let mut group = Element::new("OrgnlGrpInfAndSts")
        .child(Element::leaf("OrgnlMsgId", &r.original_message_id))
        .child(Element::leaf("OrgnlMsgNmId", &r.original_message_name));
    if let Some(status) = &r.group_status {
        group = group.child(Element::leaf("GrpSts", status));
    }
    if let Some(code) = &r.group_reason {
        group = group.child(reason(code, None));
    }
    let mut report = Element::new("CstmrPmtStsRpt")
        .child(
            Element::new("GrpHdr")
                .child(Element::leaf("MsgId", &r.message_id))
                .child(Element::leaf("CreDtTm", &r.created_at)),
        )
        .child(group);
    if let Some(payment_id) = &r.original_payment_id {
        let transactions = r.transactions.iter().map(|t| {
            let mut e = Element::new("TxInfAndSts")
                .child(Element::leaf("OrgnlEndToEndId", &t.end_to_end_id))
                .child(Element::leaf("TxSts", &t.code));
            if let Some(code) = &t.reason {
                e = e.child(reason(code, t.info.as_deref()));
            }
            e
        });
        report = report.child(
            Element::new("OrgnlPmtInfAndSts")
                .child(Element::leaf("OrgnlPmtInfId", payment_id))
                .children(transactions),
        );
    }
    Element::new("Document")
        .attr("xmlns", NAMESPACE)
        .child(report)
        .to_document()
}

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a pain.002.001.10 status report: {0}")]
pub struct Unreadable(pub String);

fn required(e: &Element, path: &[&str]) -> Result<String, Unreadable> {
    e.text_at(path)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Unreadable(format!("missing element {}", path.join("/"))))
}

fn optional(e: &Element, path: &[&str]) -> Option<String> {
    e.text_at(path).filter(|t| !t.is_empty()).map(str::to_string)
}

/// Reads a report strictly: the namespace, the original message and every
/// transaction status must be there.
pub fn parse(document: &str) -> Result<StatusReport, Unreadable> {
    let root = xml::parse(document).map_err(|e| Unreadable(e.to_string()))?;
    if root.name != "Document" || root.attribute("xmlns") != Some(NAMESPACE) {
        return Err(Unreadable(format!(
            "the root must be Document in the {NAMESPACE} namespace"
        )));
    }
    let report = root
        .get("CstmrPmtStsRpt")
        .ok_or_else(|| Unreadable("missing element CstmrPmtStsRpt".into()))?;
    let group = report
        .get("OrgnlGrpInfAndSts")
        .ok_or_else(|| Unreadable("missing element OrgnlGrpInfAndSts".into()))?;
    let payment = report.get("OrgnlPmtInfAndSts");
    let mut transactions = Vec::new();
    if let Some(payment) = payment {
        for tx in payment.all("TxInfAndSts") {
            let code = required(tx, &["TxSts"])?;
            if super::TxStatus::from_code(&code).is_none() {
                return Err(Unreadable(format!("unknown TxSts '{code}'")));
            }
            transactions.push(TransactionStatus {
                end_to_end_id: required(tx, &["OrgnlEndToEndId"])?,
                code,
                reason: optional(tx, &["StsRsnInf", "Rsn", "Cd"]),
                info: optional(tx, &["StsRsnInf", "AddtlInf"]),
            });
        }
    }
    Ok(StatusReport {
        message_id: required(report, &["GrpHdr", "MsgId"])?,
        created_at: required(report, &["GrpHdr", "CreDtTm"])?,
        original_message_id: required(group, &["OrgnlMsgId"])?,
        original_message_name: required(group, &["OrgnlMsgNmId"])?,
        group_status: optional(group, &["GrpSts"]),
        group_reason: optional(group, &["StsRsnInf", "Rsn", "Cd"]),
        original_payment_id: payment.and_then(|p| optional(p, &["OrgnlPmtInfId"])),
        transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of a bank's rejection for a closed account (element order
    // as the schema has it).
    const REJECTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>BANK-STS-000418</MsgId><CreDtTm>2025-01-26T12:00:07+01:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>NIXO-pyt_9</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId><GrpSts>RJCT</GrpSts>
    </OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>pyt_9</OrgnlPmtInfId>
      <TxInfAndSts>
        <OrgnlEndToEndId>pyt_9</OrgnlEndToEndId><TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Creditor account closed</AddtlInf></StsRsnInf>
      </TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>"#;

    #[test]
    fn a_rejection_reads_with_its_reason() {
        let r = parse(REJECTED).unwrap();
        assert_eq!(r.original_message_id, "NIXO-pyt_9");
        assert_eq!(r.group_status.as_deref(), Some("RJCT"));
        let tx = &r.transactions[0];
        assert_eq!((tx.end_to_end_id.as_str(), tx.code.as_str()), ("pyt_9", "RJCT"));
        assert_eq!(tx.reason.as_deref(), Some("AC04"));
        assert_eq!(tx.info.as_deref(), Some("Creditor account closed"));
        assert_eq!(parse(&render(&r)).unwrap(), r);
    }

    #[test]
    fn unknown_statuses_and_other_messages_are_refused() {
        assert!(parse(&REJECTED.replace("<TxSts>RJCT", "<TxSts>XXXX")).is_err());
        assert!(parse(&REJECTED.replace("pain.002.001.10", "pain.002.001.03")).is_err());
        assert!(parse(&REJECTED.replace("<OrgnlEndToEndId>pyt_9</OrgnlEndToEndId>", "")).is_err());
    }
}
