"""The labelled set of bench/dialogs (issue 19) has the shape bench/quality.py relies on."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.dialogset import Dialog, load
from qualification.prompt import WINDOW_MESSAGES
from qualification.verdict import MAX_EVIDENCE, addressed_to_the_model

DIALOGS = load()
HARD_CASES = {"operator_books_no_confirm", "availability_only", "booked_then_cancelled", "non_fit_answers_all",
              "media_only", "long_past_window", "injection"}


def test_the_set_is_large_and_spread_over_languages_businesses_levels_and_hard_cases() -> None:
    assert len(DIALOGS) >= 120
    assert len({d.id for d in DIALOGS}) == len(DIALOGS)
    by_language = Counter(d.language for d in DIALOGS)
    by_business = Counter(d.business for d in DIALOGS)
    assert set(by_language) == {"ru", "pt", "es", "en"} and min(by_language.values()) >= 30
    assert set(by_business) == {"clinic", "school", "realty", "auto"} and min(by_business.values()) >= 30
    by_level = Counter(d.level for d in DIALOGS)
    assert by_level[2] >= 30 and by_level[3] >= 15 and by_level[1] >= 30
    cases = Counter(d.case for d in DIALOGS)
    assert HARD_CASES <= set(cases) and cases["injection"] >= 12
    texts = [" ".join(m.text for m in d.messages) for d in DIALOGS]
    assert len(set(texts)) == len(texts)  # every dialog is its own text


@pytest.mark.parametrize("dialog", DIALOGS, ids=[d.id for d in DIALOGS])
def test_a_dialog_s_level_and_evidence_fit_its_messages(dialog: Dialog) -> None:
    ids = [m.id for m in dialog.messages]
    assert ids == list(range(1, len(ids) + 1))
    clients = len(dialog.client_ids)
    assert (dialog.level >= 1) == (clients >= 2)  # level 1 is the rule "2+ client messages"
    if dialog.level >= 2:
        assert 1 <= len(dialog.evidence) <= MAX_EVIDENCE
        assert set(dialog.evidence) <= dialog.client_ids  # only the client's messages prove anything
        assert set(dialog.evidence) != dialog.client_ids  # the proof, not the dialog wholesale
        assert set(dialog.evidence) <= dialog.transcript().ids  # inside the window the model sees
    else:
        assert dialog.evidence == []
    assert dialog.criteria.strip()


def test_the_hard_cases_are_what_they_say() -> None:
    for d in DIALOGS:
        if d.case == "long_past_window":
            assert len(d.messages) > WINDOW_MESSAGES and d.transcript().omitted > 0
        if d.case == "media_only":
            assert all(m.media_type and not m.text for m in d.messages if m.role == "client"), d.id
        if d.case == "operator_books_no_confirm":
            assert d.level < 3 and any(m.role == "operator" for m in d.messages), d.id
        if d.case == "injection":  # the filter sees them; the subtle ones are for the model alone
            assert d.level <= 1 and addressed_to_the_model(d.transcript()) is not None, d.id
