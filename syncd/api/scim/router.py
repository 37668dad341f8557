"""The SCIM 2.0 HTTP surface: a Starlette app mounted at ``/scim/v2`` (docs/adr/0030).

Every endpoint goes through :func:`_endpoint`: authenticate the bearer token, run the handler, and turn
any error into a SCIM Error body (:func:`syncd.api.scim.errors.to_error`, the one mapping). Bodies are read
here with the checks RFC 7644 asks for (media type → 415, size → 413, UTF-8 and JSON → 400
``invalidSyntax``); database work runs in the thread pool, one unit of work per request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncd.api.scim import discovery, groups, patch, query, users
from syncd.api.scim.auth import Client, Clients
from syncd.api.scim.batch import BatchWriter
from syncd.api.scim.catalogue import GROUPS, USERS, ResourceType
from syncd.api.scim.context import Context
from syncd.api.scim.errors import (
    InvalidFilterError,
    InvalidSyntaxError,
    MethodNotAllowedError,
    NotSupportedError,
    PayloadTooLargeError,
    ResourceNotFoundError,
    UnsupportedMediaTypeError,
    to_error,
)
from syncd.api.scim.filters import compile_filter
from syncd.api.scim.mappers import GroupMapper, UserMapper
from syncd.config.models import Config
from syncd.store.db import Database
from syncd.store.point_reads import AsyncPointReader, PointReader

MEDIA_TYPE = "application/scim+json"
ACCEPTED = frozenset({"application/scim+json", "application/json"})
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
Handler = Callable[[Request, Client], Awaitable[Response]]
T = TypeVar("T")


def scim_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def error_response(error: BaseException) -> Response:
    status, body = to_error(error)
    headers = {"www-authenticate": 'Bearer realm="SCIM"'} if status == 401 else None
    return scim_response(body, status, headers)


def create_scim_app(config: Config, db: Database) -> Starlette:
    """The SCIM app for one config and database."""
    return _Api(config, db).app()


class _Api:
    def __init__(self, config: Config, db: Database) -> None:
        self.clients = Clients(config)
        base = f"{config.org.base_url}/scim/v2"
        self.batch = BatchWriter(db) if db.is_sqlite else None  # group commit (docs/adr/0033)
        self.ctx = Context(
            db,
            base,
            batch=self.batch,
            points=PointReader.for_database(db),
            async_points=AsyncPointReader.for_database(db),
        )
        self.docs = discovery.build(base, config.api.max_body_bytes)
        self.max_body = config.api.max_body_bytes
        # SQLite point reads (by id, by userName) run on the event loop: in WAL mode a reader never waits
        # for a writer, and an indexed lookup takes far less than a thread-pool round trip. Everything
        # else (scans, writes, PostgreSQL's network round trips) runs in the thread pool.
        self.inline_point_reads = db.is_sqlite
        # How many requests do database work at once. PostgreSQL: as many as the pool holds connections;
        # beyond that SQLAlchemy opens an overflow connection per request and closes it after (a backend
        # start each time). SQLite: reads share anyio's default pool; writes go to the one writer thread
        # of self.batch (SQLite allows one writer), group-committed (docs/adr/0033).
        self.limiter = None if db.is_sqlite else CapacityLimiter(db.config.pool_size)

    async def read(self, func: Callable[..., T], *args: Any) -> T:
        return await to_thread.run_sync(functools.partial(func, *args), limiter=self.limiter)

    async def write(self, func: Callable[..., T], *args: Any) -> T:
        if self.batch is not None:
            return await self.batch.run(functools.partial(func, *args))
        return await to_thread.run_sync(functools.partial(func, *args), limiter=self.limiter)

    def app(self) -> Starlette:
        docs = self.docs
        routes: list[tuple[str, Handler]] = [
            *self._resource_routes(users, USERS),
            *self._resource_routes(groups, GROUPS),
            ("/.search", self.root_search),
            ("/ServiceProviderConfig", _read_only(lambda _r: docs.service_provider_config)),
            ("/ResourceTypes", _read_only(lambda _r: docs.listing(docs.resource_types))),
            ("/ResourceTypes/{object_id}", _read_only(_one_of(docs.resource_types, "resource type"))),
            ("/Schemas", _read_only(lambda _r: docs.listing(docs.schemas))),
            ("/Schemas/{object_id}", _read_only(_one_of(docs.schemas, "schema"))),
            ("/Bulk", _unsupported),
            ("/Me", _unsupported),
        ]
        return Starlette(
            routes=[Route(path, self._endpoint(handler), methods=ALL_METHODS) for path, handler in routes],
            exception_handlers={HTTPException: self.http_error},
        )

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        clients = self.clients

        async def endpoint(request: Request) -> Response:
            try:
                client = clients.authenticate(request.headers.get("authorization"))
                return await handler(request, client)
            except Exception as error:  # noqa: BLE001 - the one place errors become SCIM bodies (logged there)
                return error_response(error)

        return endpoint

    async def http_error(self, request: Request, error: Exception) -> Response:
        """Routing errors (unknown path, 404; never reached for methods, see ALL_METHODS) as SCIM bodies."""
        try:
            self.clients.authenticate(request.headers.get("authorization"))
        except Exception as auth_error:  # noqa: BLE001 - mapped to a SCIM 401 body
            return error_response(auth_error)
        if isinstance(error, HTTPException) and error.status_code == 405:
            return error_response(MethodNotAllowedError("method not allowed"))
        return error_response(ResourceNotFoundError("no such endpoint"))

    async def read_json(self, request: Request) -> Any:
        """The JSON body: 415 for other media types, 413 above the limit, 400 unless UTF-8 JSON."""
        content_type = request.headers.get("content-type")
        if content_type is not None and content_type.split(";")[0].strip().lower() not in ACCEPTED:
            raise UnsupportedMediaTypeError("send application/scim+json (or application/json)")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise PayloadTooLargeError(f"the body is larger than {self.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLargeError(f"the body is larger than {self.max_body} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidSyntaxError("the body is not UTF-8") from None
        except (ValueError, RecursionError):
            raise InvalidSyntaxError("the body is not valid JSON") from None

    def _resource_routes(self, module: Any, rt: ResourceType) -> list[tuple[str, Handler]]:
        ctx = self.ctx

        async def collection(request: Request, client: Client) -> Response:
            if request.method == "GET":
                wanted = _params(request)
                if module is users and users.is_point_lookup(wanted):
                    if self.inline_point_reads:
                        return scim_response(users.search(ctx, client, wanted))  # see __init__
                    if (found := await users.lookup(ctx, client, wanted)) is not None:
                        return scim_response(found)  # PostgreSQL, on the event loop
                return scim_response(await self.read(module.search, ctx, client, wanted))
            if request.method == "POST":
                body = await self.read_json(request)
                proj = _params(request).projection(rt)
                return _single(await self.write(module.create, ctx, client, body, proj), 201)
            raise MethodNotAllowedError(f"{request.method} is not allowed on {rt.endpoint}")

        async def search(request: Request, client: Client) -> Response:
            if request.method != "POST":
                raise MethodNotAllowedError(f"use POST on {rt.endpoint}/.search")
            wanted = query.from_search(await self.read_json(request))
            return scim_response(await self.read(module.search, ctx, client, wanted))

        async def item(request: Request, client: Client) -> Response:
            object_id = request.path_params["object_id"]
            if_match = request.headers.get("if-match")
            proj = _params(request).projection(rt)
            method = request.method
            if method == "GET":
                if self.inline_point_reads:
                    result = module.get(ctx, client, object_id, proj)
                elif module is users and (found := await users.get_async(ctx, client, object_id, proj)):
                    result = found  # PostgreSQL, on the event loop
                else:
                    result = await self.read(module.get, ctx, client, object_id, proj)
                if request.headers.get("if-none-match") in (result[1], "*"):
                    return Response(status_code=304, headers={"etag": result[1]})
                return _single(result)
            if method == "PUT":
                body = await self.read_json(request)
                return _single(await self.write(module.replace, ctx, client, object_id, body, if_match, proj))
            if method == "PATCH":
                ops = patch.operations(await self.read_json(request))
                if module is groups:  # 204, as Entra expects (Okta accepts it); users get 200 + the resource
                    await self.write(groups.modify, ctx, client, object_id, ops, if_match)
                    return Response(status_code=204)
                return _single(await self.write(users.modify, ctx, client, object_id, ops, if_match, proj))
            if method == "DELETE":
                await self.write(module.delete, ctx, client, object_id, if_match)
                return Response(status_code=204)
            raise MethodNotAllowedError(f"{method} is not allowed here")

        return [
            (rt.endpoint, collection),
            (f"{rt.endpoint}/.search", search),
            (f"{rt.endpoint}/{{object_id}}", item),
        ]

    async def root_search(self, request: Request, client: Client) -> Response:
        if request.method != "POST":
            raise MethodNotAllowedError("use POST on /.search")
        wanted = query.from_search(await self.read_json(request))
        return scim_response(await self.read(_search_all, self.ctx, client, wanted))


def _params(request: Request) -> query.Query:
    return query.from_params(request.query_params)


def _single(result: tuple[dict[str, Any], str], status: int = 200) -> Response:
    resource, version = result
    headers = {"etag": version}
    if status == 201 and "meta" in resource:
        headers["location"] = resource["meta"]["location"]
    return scim_response(resource, status, headers)


def _read_only(document: Callable[[Request], dict[str, Any]]) -> Handler:
    async def handler(request: Request, _client: Client) -> Response:
        if request.method != "GET":
            raise MethodNotAllowedError("discovery endpoints are read-only")
        return scim_response(document(request))

    return handler


def _one_of(items: dict[str, dict[str, Any]], what: str) -> Callable[[Request], dict[str, Any]]:
    def document(request: Request) -> dict[str, Any]:
        wanted = request.path_params["object_id"]
        found = next((doc for key, doc in items.items() if key.lower() == wanted.lower()), None)
        if found is None:
            raise ResourceNotFoundError(f"no such {what}")
        return found

    return document


async def _unsupported(request: Request, _client: Client) -> Response:
    raise NotSupportedError(f"{request.url.path.rsplit('/', 1)[-1]} is not supported by syncd")


def _search_all(ctx: Context, client: Client, wanted: query.Query) -> dict[str, Any]:
    """POST /.search: Users, then Groups. An attribute one type lacks is false for that type (RFC 7644
    §3.4.2.1); a filter no type can evaluate is 400 ``invalidFilter``."""
    if wanted.filter is not None:
        failures = []
        for mapper in (UserMapper(ctx.dialect, client.source), GroupMapper(ctx.dialect, client.source)):
            try:
                compile_filter(mapper, wanted.filter, ctx.dialect)
            except InvalidFilterError as error:
                failures.append(error)
        if len(failures) == 2:
            raise failures[0]
    results: list[dict[str, Any]] = []
    total = 0
    skip, remaining = wanted.start_index - 1, wanted.count
    for module in (users, groups):
        part = query.Query(
            filter=wanted.filter,
            start_index=skip + 1,
            count=remaining,
            attributes=wanted.attributes,
            excluded=wanted.excluded,
        )
        found = module.search(ctx, client, part, lenient=True)
        results += found["Resources"]
        remaining -= len(found["Resources"])
        skip = max(skip - found["totalResults"], 0)
        total += found["totalResults"]
    return query.list_response(results, total, wanted)
