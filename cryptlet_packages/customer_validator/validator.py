"""customer_validator: a utility cryptlet that validates a customer record privately.

The verdict says whether the record passes the onboarding rules and which rules failed; the
record itself never leaves the region. ``record_commitment`` = SHA-256(salt || canonical record)
lets the caller later prove which record was checked, without anyone else learning it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

RULES_VERSION = "2026.1"
SANCTIONED_COUNTRIES = frozenset({"KP", "IR", "SY", "CU"})
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
MIN_AGE_YEARS = 18
MIN_CREDIT_SCORE = 600
REQUIRED_FIELDS = ("name", "email", "country", "birth_date", "credit_score")


def _age(birth_date: str, today: dt.date) -> int:
    born = dt.date.fromisoformat(birth_date)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class CustomerValidator:
    """Rules: required fields, adult, valid email, not in a sanctioned country, credit score floor."""

    def rules(self) -> dict:
        return {
            "version": RULES_VERSION,
            "min_age_years": MIN_AGE_YEARS,
            "min_credit_score": MIN_CREDIT_SCORE,
            "sanctioned_countries": sorted(SANCTIONED_COUNTRIES),
            "required_fields": list(REQUIRED_FIELDS),
        }

    def validate(self, customer: dict, salt: str) -> dict:
        if not isinstance(customer, dict):
            raise ValueError("customer must be a JSON object")
        salt_bytes = bytes.fromhex(salt[2:] if salt.startswith("0x") else salt)
        if len(salt_bytes) != 32:
            raise ValueError("salt must be 32 bytes of hex")
        failed: list[str] = []
        missing = [f for f in REQUIRED_FIELDS if customer.get(f) in (None, "")]
        if missing:
            failed.append("required_fields")
        try:
            if _age(str(customer.get("birth_date")), dt.date.today()) < MIN_AGE_YEARS:
                failed.append("adult")
        except ValueError:
            failed.append("adult")
        if not EMAIL.match(str(customer.get("email", ""))):
            failed.append("email")
        if str(customer.get("country", "")).upper() in SANCTIONED_COUNTRIES:
            failed.append("sanctions")
        score = customer.get("credit_score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or score < MIN_CREDIT_SCORE:
            failed.append("credit_score")
        record = json.dumps(customer, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        commitment = hashlib.sha256(salt_bytes + record).hexdigest()
        return {
            "approved": not failed,
            "failed_rules": failed,
            "record_commitment": "0x" + commitment,
            "rules_version": RULES_VERSION,
        }
