"""Schemathesis hooks for the Nixo API document (loaded by scripts/schemathesis).

Two things a generated request may do that no document can rule out, and
which the hook below undoes before the request is sent so the checks judge
everything else the document says:

- `to_wallet` equal to `from_wallet`: a transfer's one rule JSON Schema
  cannot express (the server answers 400 naming `to_wallet`);
- two different generated bodies under one `Idempotency-Key`: generated
  requests are meant to be independent, and the server rightly answers the
  second with 422 `idempotency_key_reused`. A well-formed key is made unique
  per request; badly formed keys are left alone for the negative checks.
"""

import uuid

import schemathesis


def _key_ok(key):
    return isinstance(key, str) and 0 < len(key.strip()) <= 255 and all("!" <= c <= "~" for c in key.strip())


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict):
        source, destination = body.get("from_wallet"), body.get("to_wallet")
        numbers = (int, float)
        if isinstance(source, numbers) and not isinstance(source, bool) and source == destination:
            body["to_wallet"] = int(source) + 1
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and _key_ok(headers[name]):
            headers[name] = "st-" + uuid.uuid4().hex
