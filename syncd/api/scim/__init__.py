"""SCIM 2.0 service provider (RFC 7643/7644) at ``/scim/v2``: identity providers push users and groups.

Modules: ``router`` (HTTP), ``auth`` (bearer tokens), ``errors`` (SCIM error bodies), ``catalogue`` (attribute
definitions), ``validation`` (request documents), ``resources`` (rows ↔ SCIM), ``filters`` + ``mappers``
(filters → SQL), ``patch`` (PATCH operations), ``query`` (lists, paging), ``users`` / ``groups`` (units of
work), ``discovery`` (ServiceProviderConfig, ResourceTypes, Schemas), ``context``.
"""

from syncd.api.scim.router import create_scim_app

__all__ = ["create_scim_app"]
