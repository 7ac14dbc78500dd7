//! The dashboard's HTML: plain server-rendered pages, every dynamic value
//! escaped, labelled form controls, and a layout that reads on a phone.

use crate::rules::manifest::{FailurePolicy, PluginKind};
use crate::services::reviews::{self, ReviewRow};
use crate::services::{Actor, Services};
use nixo_api::pagination::ListParams;
use nixo_api::reviews::ReviewFilter;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Reviews shown in the queue, decisions in the log, at most.
pub const QUEUE_LEN_MAX: i64 = 50;
pub const DECISIONS_LEN_MAX: i64 = 50;
/// Decisions read per plugin for the last hour's latency figures, at most.
pub const STATS_SAMPLE_MAX: i64 = 10_000;
const HOUR_MS: i64 = 3_600_000;

/// Text safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem;line-height:1.4}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
.wrap{overflow-x:auto}form.inline{display:inline-flex;gap:.3rem;flex-wrap:wrap;align-items:center}
button{padding:.35rem .8rem;font-size:1rem}input[type=text],input[type=password]{padding:.35rem;font-size:1rem;max-width:100%}
.muted{color:#555}.bad{color:#a00}nav{display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap}
@media (max-width:40rem){th,td{padding:.25rem;font-size:.9rem}}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

pub fn login(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"bad\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    document(
        "Nixo risk dashboard — sign in",
        &format!(
            "<main><h1>Nixo risk dashboard</h1>{error}\
             <form method=\"post\" action=\"/dashboard/login\">\
             <label for=\"key\">API key</label><br>\
             <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" required size=\"48\">\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"muted\">The key stays on the server side: the session cookie names the key, never holds it.</p></main>"
        ),
    )
}

pub fn message(text: &str) -> String {
    document(
        "Nixo risk dashboard",
        &format!(
            "<main><p role=\"alert\">{}</p><p><a href=\"/dashboard\">Back to the dashboard</a></p></main>",
            escape(text)
        ),
    )
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn review_row(r: &ReviewRow, csrf: &str, can_close: bool) -> String {
    let rendered = r.render();
    let parties = match (
        &rendered.parties.from_wallet,
        &rendered.parties.to_wallet,
        &rendered.parties.recipient,
    ) {
        (Some(from), Some(to), _) => format!("wallet {from} → wallet {to}"),
        (Some(from), None, Some(recipient)) => format!("wallet {from} → {recipient}"),
        _ => String::new(),
    };
    let id = escape(&r.id);
    let actions = if can_close {
        let form = |action: &str, label: &str| {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/dashboard/reviews/{id}/{action}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <label for=\"note-{action}-{id}\" class=\"muted\">Note</label>\
                 <input id=\"note-{action}-{id}\" name=\"note\" type=\"text\" maxlength=\"500\" size=\"14\">\
                 <button type=\"submit\" aria-label=\"{label} review {id}\">{label}</button></form>",
                escape(csrf)
            )
        };
        format!("{}{}", form("approve", "Approve"), form("decline", "Decline"))
    } else {
        "<span class=\"muted\">reviews:write needed</span>".into()
    };
    format!(
        "<tr data-review=\"{id}\"><td>{}<br><span class=\"muted\">{id}</span></td><td>{} {}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        escape(&r.subject),
        escape(&rendered.amount.to_string()),
        escape(&rendered.currency),
        escape(&parties),
        escape(&rendered.reasons.join(", ")),
        escape(&rendered.risk_score.to_string()),
        escape(&time(r.expires_at_ms)),
    )
}

/// p50 and p99 of a sorted list.
fn percentiles(sorted: &[i64]) -> (i64, i64) {
    if sorted.is_empty() {
        return (0, 0);
    }
    let at = |p: usize| sorted[((sorted.len() - 1) * p) / 100];
    (at(50), at(99))
}

/// Per plugin name: (decisions in the last hour, p50 µs, p99 µs).
async fn plugin_stats(services: &Services, now_ms: i64) -> Result<BTreeMap<String, (usize, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT plugin_name, latency_us FROM rule_decisions WHERE created_at_ms >= $1 ORDER BY created_at_ms DESC LIMIT $2",
    )
    .bind(now_ms - HOUR_MS)
    .bind(STATS_SAMPLE_MAX)
    .fetch_all(&services.ledger.db.pool)
    .await?;
    let mut by_plugin: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in &rows {
        by_plugin.entry(row.try_get(0)?).or_default().push(row.try_get(1)?);
    }
    Ok(by_plugin
        .into_iter()
        .map(|(name, mut latencies)| {
            latencies.sort_unstable();
            let (p50, p99) = percentiles(&latencies);
            (name, (latencies.len(), p50, p99))
        })
        .collect())
}

/// A bar chart of p50 and p99 latency per plugin (inline SVG, labelled).
fn latency_chart(stats: &BTreeMap<String, (usize, i64, i64)>) -> String {
    if stats.is_empty() {
        return "<p class=\"muted\">No decisions in the last hour.</p>".into();
    }
    let max = stats.values().map(|(_, _, p99)| *p99).max().unwrap_or(1).max(1);
    let row_h = 34;
    let mut bars = String::new();
    for (i, (name, (_, p50, p99))) in stats.iter().enumerate() {
        let y = i as i64 * row_h;
        let w = |v: i64| 60 + v * 500 / max;
        let _ = write!(
            bars,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>\
             <rect x=\"0\" y=\"{}\" width=\"{}\" height=\"8\" fill=\"#7aa6d8\"><title>p99 {p99} µs</title></rect>\
             <rect x=\"0\" y=\"{}\" width=\"{}\" height=\"8\" fill=\"#1f5fa8\"><title>p50 {p50} µs</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">p50 {p50} µs · p99 {p99} µs</text>",
            y + 11,
            escape(name),
            y + 14,
            w(*p99),
            y + 23,
            w(*p50),
            w(*p99) + 6,
            y + 22,
        );
    }
    format!(
        "<svg role=\"img\" aria-labelledby=\"latency-title\" viewBox=\"0 0 760 {}\" width=\"100%\">\
         <title id=\"latency-title\">Decision latency per plugin, last hour (p50 dark, p99 light)</title>{bars}</svg>",
        stats.len() as i64 * row_h
    )
}

/// The dashboard page.
pub async fn home(
    services: &Services,
    actor: &Actor,
    csrf: &str,
    can_close: bool,
    query: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let now_ms = services.clock.now_ms();
    let mut body = String::new();
    let _ = write!(
        body,
        "<nav><h1>Nixo risk dashboard</h1><form method=\"post\" action=\"/dashboard/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form></nav>\
         <p class=\"muted\">Account {} ({})</p><main>",
        escape(csrf),
        escape(&actor.account_id),
        actor.environment.as_str()
    );

    // Balances per currency.
    let balances = services.ledger.balances(&actor.account_id, None).await?;
    body.push_str("<section aria-labelledby=\"balances\"><h2 id=\"balances\">Balances</h2><div class=\"wrap\"><table>\
                   <thead><tr><th scope=\"col\">Currency</th><th scope=\"col\">Available</th><th scope=\"col\">Pending</th>\
                   <th scope=\"col\">Reserved</th></tr></thead><tbody>");
    for b in &balances {
        let Some(currency) = crate::money::Currency::from_code(&b.currency) else {
            continue;
        };
        let _ = write!(
            body,
            "<tr data-currency=\"{0}\"><td>{0}</td><td data-kind=\"available\">{1}</td><td>{2}</td><td>{3}</td></tr>",
            escape(&b.currency),
            currency.minor_to_text(b.available_minor),
            currency.minor_to_text(b.pending_minor),
            currency.minor_to_text(b.reserved_minor),
        );
    }
    body.push_str("</tbody></table></div></section>");

    // The review queue.
    let page = ListParams {
        limit: QUEUE_LEN_MAX,
        ..ListParams::default()
    };
    let filter = ReviewFilter {
        open: Some(true),
        ..ReviewFilter::default()
    };
    let (open, more) = reviews::list(services, actor, &filter, &page)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = write!(
        body,
        "<section aria-labelledby=\"reviews\"><h2 id=\"reviews\">Review queue ({}{})</h2>",
        open.len(),
        if more { "+" } else { "" }
    );
    if open.is_empty() {
        body.push_str("<p class=\"muted\">Nothing is waiting for review.</p>");
    } else {
        body.push_str(
            "<div class=\"wrap\"><table><thead><tr><th scope=\"col\">What</th><th scope=\"col\">Amount</th>\
                       <th scope=\"col\">Parties</th><th scope=\"col\">Reasons</th><th scope=\"col\">Score</th>\
                       <th scope=\"col\">Expires</th><th scope=\"col\">Decide</th></tr></thead><tbody>",
        );
        for r in &open {
            body.push_str(&review_row(r, csrf, can_close));
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    // Loaded plugins and their last hour.
    let stats = plugin_stats(services, now_ms).await?;
    body.push_str("<section aria-labelledby=\"plugins\"><h2 id=\"plugins\">Rule plugins</h2><div class=\"wrap\"><table>\
                   <thead><tr><th scope=\"col\">Plugin</th><th scope=\"col\">Kind</th><th scope=\"col\">sha256</th>\
                   <th scope=\"col\">Failure policy</th><th scope=\"col\">Limits</th><th scope=\"col\">Decisions (1 h)</th>\
                   <th scope=\"col\">p50 / p99 µs</th></tr></thead><tbody>");
    for plugin in services.rules.loaded() {
        let m = plugin.manifest();
        // The decision log names plugins by their manifest name.
        let (count, p50, p99) = stats.get(&m.name).copied().unwrap_or((0, 0, 0));
        let limits = format!(
            "fuel {} · {} ms · {} bytes · review expiry: {}",
            m.limits.fuel_per_call_max.map_or("default".into(), |v| v.to_string()),
            m.limits.deadline_ms.map_or("default".into(), |v| v.to_string()),
            m.limits.memory_max_bytes.map_or("default".into(), |v| v.to_string()),
            m.review_expiry.as_str(),
        );
        let _ = write!(
            body,
            "<tr><td>{} {}<br><span class=\"muted\">{}</span></td><td>{}</td><td><code>{}…</code></td><td>{}</td>\
             <td>{}</td><td>{count}</td><td>{p50} / {p99}</td></tr>",
            escape(&m.name),
            escape(&m.version),
            escape(plugin.display_name()),
            match m.kind {
                PluginKind::Fraud => "fraud",
                PluginKind::Payout => "payout",
            },
            escape(plugin.sha256().get(..12).unwrap_or_default()),
            match m.failure_policy {
                FailurePolicy::FailClosed => "fail closed",
                FailurePolicy::FailOpen => "fail open",
            },
            escape(&limits),
        );
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&latency_chart(&stats));
    body.push_str("</section>");

    // Recent decisions, filterable by plugin and outcome.
    let plugin_filter = query.get("plugin").map(String::as_str).unwrap_or_default();
    let outcome_filter = query.get("outcome").map(String::as_str).unwrap_or_default();
    let page = ListParams {
        limit: nixo_api::schema::LIST_LIMIT_MAX,
        ..ListParams::default()
    };
    let (decisions, _) = crate::rules::decision_log::list(&services.ledger.db, &actor.account_id, None, &page)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = write!(
        body,
        "<section aria-labelledby=\"decisions\"><h2 id=\"decisions\">Recent decisions</h2>\
         <form method=\"get\" action=\"/dashboard\" class=\"inline\">\
         <label for=\"plugin\">Plugin</label><input id=\"plugin\" name=\"plugin\" type=\"text\" value=\"{}\" size=\"12\">\
         <label for=\"outcome\">Outcome</label><input id=\"outcome\" name=\"outcome\" type=\"text\" value=\"{}\" size=\"10\">\
         <button type=\"submit\">Filter</button></form><div class=\"wrap\"><table><thead><tr>\
         <th scope=\"col\">When</th><th scope=\"col\">Plugin</th><th scope=\"col\">Outcome</th><th scope=\"col\">Score</th>\
         <th scope=\"col\">Latency µs</th><th scope=\"col\">Input (masked)</th></tr></thead><tbody>",
        escape(plugin_filter),
        escape(outcome_filter)
    );
    let mut shown = 0;
    for d in &decisions {
        let outcome = d
            .output
            .as_ref()
            .and_then(|o| o["verdict"].as_str().or(o["outcome"].as_str()))
            .map(str::to_string)
            .or_else(|| d.failure.clone())
            .unwrap_or_else(|| "answered".into());
        if (!plugin_filter.is_empty() && !d.plugin.name.contains(plugin_filter))
            || (!outcome_filter.is_empty() && !outcome.eq_ignore_ascii_case(outcome_filter))
        {
            continue;
        }
        if shown == DECISIONS_LEN_MAX {
            break;
        }
        shown += 1;
        let score = d
            .output
            .as_ref()
            .and_then(|o| o["score_bp"].as_u64())
            .and_then(|bp| u16::try_from(bp).ok())
            .map(|bp| crate::services::payments::risk_score(bp).to_string())
            .unwrap_or_default();
        let input: String = d.input.to_string().chars().take(160).collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&time(d.created * 1000)),
            escape(&d.plugin.name),
            escape(&d.plugin.version),
            escape(&outcome),
            escape(&score),
            d.latency_us,
            escape(&input),
        );
    }
    body.push_str("</tbody></table></div></section></main>");
    Ok(document("Nixo risk dashboard", &body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_and_percentiles() {
        assert_eq!(
            super::escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(super::percentiles(&[]), (0, 0));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(super::percentiles(&v), (50, 99));
    }
}
