"""Country and amount: where the money goes, how much, and who sends it.

- A destination country in `blocked_countries`: deny.
- A destination country in `review_countries`, for `review_amount.<CUR>`
  or more: review.
- An account below KYC level 2 sending more than `unverified_max.<CUR>`:
  review.

Amounts are exact decimal strings, compared as Decimal (never float).
"""

from decimal import Decimal, InvalidOperation

from wit_world import exports
from wit_world.imports.types import Decision, Verdict


def country_set(settings, key):
    return {c.strip().upper() for c in settings.get(key, "").split(",") if c.strip()}


def amount_setting(settings, key):
    try:
        return Decimal(settings[key]) if key in settings else None
    except InvalidOperation:
        return None


class FraudCheck(exports.FraudCheck):
    def name(self) -> str:
        return "CountryPy"

    def check(self, tx, config) -> Decision:
        settings = dict(config)
        country = (tx.destination_country or "").upper()
        amount = Decimal(tx.amount.amount)
        currency = tx.amount.currency
        if country in country_set(settings, "blocked_countries"):
            return Decision(Verdict.DENY, 10000, ["destination_country_blocked"])
        reasons = []
        review_at = amount_setting(settings, "review_amount." + currency)
        if country in country_set(settings, "review_countries") and review_at is not None and amount >= review_at:
            reasons.append("country_amount_review")
        unverified_max = amount_setting(settings, "unverified_max." + currency)
        if tx.account.kyc_level < 2 and unverified_max is not None and amount > unverified_max:
            reasons.append("unverified_amount_review")
        if reasons:
            return Decision(Verdict.REVIEW, 5000, reasons)
        return Decision(Verdict.ALLOW, 0, [])
