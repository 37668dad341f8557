"""Outgoing mail: SMTP connections (and, with the enrollment work, templates, outbox and relay)."""
