"""syncd: keeps an MFA service's users in step with an organisation's directories."""

__version__ = "0.1.0.dev0"
