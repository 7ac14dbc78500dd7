// Velocity: how often and how much the source moved money recently.
//
// - `deny_count_1h` or more transactions in the last hour: deny.
// - `review_count_1h` or more: review.
// - the last day's sum plus this amount above `review_sum_day.<CURRENCY>`:
//   review. Sums are exact decimal strings, compared as integers of minor
//   units (never as floats).

const SCALE_DECIMALS = 4;

/** "1500.5" -> 15005000n (at 4 decimals). Throws on anything but digits and one dot. */
function minorUnits(amount) {
  if (!/^\d+(\.\d+)?$/.test(amount)) throw new Error(`not a decimal amount: ${amount}`);
  const [whole, fraction = ""] = amount.split(".");
  const kept = fraction.padEnd(SCALE_DECIMALS, "0").slice(0, SCALE_DECIMALS);
  return BigInt(whole) * 10n ** BigInt(SCALE_DECIMALS) + BigInt(kept);
}

function setting(config, key) {
  const found = config.find(([k]) => k === key);
  return found === undefined ? undefined : found[1];
}

function count(config, key, fallback) {
  const value = setting(config, key);
  return value === undefined ? fallback : Number.parseInt(value, 10);
}

export const fraudCheck = {
  name() {
    return "VelocityJs";
  },

  check(tx, config) {
    const inLastHour = tx.velocity.countLastHour;
    if (inLastHour >= count(config, "deny_count_1h", 30)) {
      return { verdict: "deny", scoreBp: 9500, reasons: ["velocity_1h_deny"] };
    }
    if (inLastHour >= count(config, "review_count_1h", 10)) {
      return { verdict: "review", scoreBp: 6000, reasons: ["velocity_1h_review"] };
    }
    const dayLimit = setting(config, `review_sum_day.${tx.amount.currency}`);
    if (dayLimit !== undefined) {
      const after = minorUnits(tx.velocity.sumLastDay) + minorUnits(tx.amount.amount);
      if (after > minorUnits(dayLimit)) {
        return { verdict: "review", scoreBp: 5000, reasons: ["velocity_day_sum_review"] };
      }
    }
    return { verdict: "allow", scoreBp: Math.min(inLastHour * 100, 4000), reasons: [] };
  },
};

// Warm-up at build time: componentize-js runs this module once while it
// snapshots the engine, so running the rule here leaves its functions
// compiled in the snapshot instead of compiled again in every fresh
// instance (each decision gets one).
fraudCheck.check(
  {
    kind: "transfer",
    amount: { amount: "1.00", currency: "KES" },
    source: "1",
    destination: "2",
    destinationCountry: undefined,
    account: { kycLevel: 0, ageDays: 0, sandbox: true },
    velocity: { countLastHour: 0, sumLastHour: "0", countLastDay: 0, sumLastDay: "0" },
    metadata: [],
  },
  [["review_sum_day.KES", "100"]],
);
