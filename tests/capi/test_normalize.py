"""Customer information is normalised and hashed the way Meta's examples say."""

from __future__ import annotations

import hashlib

from capi.normalize import hash_email, hash_phone, is_hashed, normalize_email


def test_phone_in_local_russian_form_becomes_international_digits_then_sha256() -> None:
    expected = hashlib.sha256(b"79161234567").hexdigest()
    assert hash_phone("8 (916) 123-45-67", "RU") == expected
    assert hash_phone("+7 916 123 45 67", "RU") == expected
    assert hash_phone("79161234567", "US") == expected  # digits with a country code stay international


def test_phone_example_from_meta_docs() -> None:
    # Meta: (650)555-1212 → 16505551212 → e323ec…
    assert hash_phone("(650)555-1212", "US") == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


def test_email_example_from_meta_docs_is_trimmed_and_lowercased() -> None:
    digest = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    assert hash_email("John_Smith@gmail.com") == digest
    assert hash_email("  JOHN_SMITH@GMAIL.COM  ") == digest
    assert normalize_email(" A@B.co ") == "a@b.co"


def test_already_hashed_values_pass_through_lowercased_never_hashed_twice() -> None:
    digest = hashlib.sha256(b"79161234567").hexdigest()
    assert hash_phone(digest.upper()) == digest
    assert hash_email(digest) == digest
    assert is_hashed(digest) and not is_hashed("79161234567")


def test_values_that_are_not_phones_or_addresses_give_nothing() -> None:
    assert hash_phone("call me") is None
    assert hash_phone("") is None and hash_phone(None) is None
    assert hash_email("not-an-address") is None and hash_email(None) is None
