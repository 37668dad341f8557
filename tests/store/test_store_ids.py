"""Object ids (syncd.store.tables.new_id): URL-safe, 22 characters, and never a leading ``-`` or ``_`` that a
command line would read as an option (``syncd sync show RUN``)."""

from __future__ import annotations

import re
import secrets

import pytest

from syncd.store.tables import new_id


def test_ids_are_url_safe_22_characters_and_start_with_a_letter_or_digit() -> None:
    ids = [new_id() for _ in range(5_000)]  # ~156 draws would start with - or _ without the redraw
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{21}", value) for value in ids)


def test_a_draw_starting_with_a_dash_is_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["-abcdefghijklmnopqrstu", "_abcdefghijklmnopqrstu", "Zabcdefghijklmnopqrstu"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(draws))
    assert new_id() == "Zabcdefghijklmnopqrstu"
