"""Logs carry no secrets and no full phone numbers."""

from __future__ import annotations

import io
import json

from core.logging import configure_logging, get_logger, mask_phone


def test_secrets_are_removed_and_phones_masked() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("t").info(
        "webhook.received",
        access_token="EAAG-secret",
        headers={"Authorization": "Bearer abc.def", "apikey": "k-123"},
        webhook_secret="s3cr3t",
        contact_phone="79161234567",
        detail="client +7 916 123 45 67 wrote from 79161234567",
        pixel_id="1234567890",
        event_id="ev-1",
    )
    configure_logging("info")
    line = stream.getvalue()
    record = json.loads(line)
    for secret in ("EAAG-secret", "abc.def", "k-123", "s3cr3t", "79161234567"):
        assert secret not in line
    assert record["contact_phone"] == "7916*****67"
    assert record["pixel_id"] == "1234567890"  # ids are not personal data
    assert record["headers"]["Authorization"] == "[redacted]"


def test_mask_phone_keeps_only_the_edges() -> None:
    assert mask_phone("79161234567") == "7916*****67"
    assert mask_phone("123") == "***"
