"""Discovery documents (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes, /Schemas.

Built once per app with scim2-models, so they are valid RFC 7643 documents, and they advertise exactly
what syncd does: PATCH, filters (with ``maxResults``), sorting and ETags yes; Bulk and password changes
no; bearer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Meta,
    Patch,
    ResourceType,
    SchemaExtension,
    ServiceProviderConfig,
    Sort,
)
from scim2_models import Group as ScimGroup
from scim2_models import User as ScimUser

from syncd.api.scim.catalogue import ENTERPRISE_URN, GROUP_URN, USER_URN
from syncd.api.scim.query import LIST_URN, MAX_COUNT


@dataclass(frozen=True, slots=True)
class Discovery:
    service_provider_config: dict[str, Any]
    resource_types: dict[str, dict[str, Any]]  # by id
    schemas: dict[str, dict[str, Any]]  # by URN

    def listing(self, items: dict[str, dict[str, Any]]) -> dict[str, Any]:
        resources = list(items.values())
        return {
            "schemas": [LIST_URN],
            "totalResults": len(resources),
            "startIndex": 1,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }


def build(base: str, max_payload: int) -> Discovery:
    """The documents for a server whose SCIM base URL is ``base``."""
    dump: dict[str, Any] = {"scim_ctx": Context.RESOURCE_QUERY_RESPONSE}
    spc = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=max_payload),
        filter=Filter(supported=True, max_results=MAX_COUNT),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Bearer token",
                description="A per-client token from the syncd configuration (RFC 6750)",
                spec_uri="https://www.rfc-editor.org/rfc/rfc6750",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )
    user_type = ResourceType(
        id="User",
        name="User",
        description="User account",
        endpoint="/Users",
        schema_=USER_URN,
        schema_extensions=[SchemaExtension(schema_=ENTERPRISE_URN, required=False)],
        meta=Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/User"),
    )
    group_type = ResourceType(
        id="Group",
        name="Group",
        description="Group",
        endpoint="/Groups",
        schema_=GROUP_URN,
        meta=Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/Group"),
    )
    schemas = {}
    for model in (ScimUser, EnterpriseUser, ScimGroup):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
        schemas[str(schema.id)] = schema.model_dump(**dump)
    return Discovery(
        service_provider_config=spc.model_dump(**dump),
        resource_types={"User": user_type.model_dump(**dump), "Group": group_type.model_dump(**dump)},
        schemas=schemas,
    )
