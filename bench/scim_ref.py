"""The reference server of bench/scim.py: scim2-server exactly as its ``scim2-server`` command serves
(stdlib wsgiref, one thread per request, in-memory storage), preloaded through its storage API with the
same users and groups (ids = externalIds, so one request script serves every server).

    python bench/scim_ref.py DATA_JSON PORT TOKEN
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from scim2_models import EnterpriseUser, Group, ScimProvider, User
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)


class PresetIds(InMemoryStorage):
    """Take the id from externalId when there is one (preloaded data), else a random one."""

    def generate_id(self, resource_type: Any, resource: Any) -> str:
        return resource.external_id or secrets.token_hex(16)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    data_path, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    types = load_default_resource_types()
    provider = ScimProvider.from_discovery(load_default_schemas().values(), types.values(), config=config)
    storage = PresetIds()
    with open(data_path, encoding="utf-8") as file:
        data = json.load(file)
    user_type, group_type = types["User"], types["Group"]
    for doc in data["users"]:
        storage.create(user_type, User[EnterpriseUser].model_validate(doc))
    for doc in data["groups"]:
        storage.create(group_type, Group.model_validate(doc))
    app = BearerTokenApplication(storage, provider, service=ScimService(provider), bearer_tokens=[token])
    with make_server("127.0.0.1", port, app, server_class=ThreadingWSGIServer, handler_class=Quiet) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
