"""Small fake peers for `qualibot doctor --online`: each knows one good credential and answers
the read-only request the doctor makes the way the real service does (shapes from
../shared/fixtures: amocrm/api-401.json, bitrix24/rest-401-no-auth.json, meta/error-190-*)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.fakes.server import FakeServer


class FakeMetaGraph(FakeServer):
    """`GET /{version}/{dataset}?fields=id,name` with `Authorization: Bearer`."""

    def __init__(self, token: str, datasets: dict[str, str], delay: float = 0.0) -> None:
        self.token, self.datasets, self.delay = token, datasets, delay
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/{version}/{dataset}", self.dataset)

    async def dataset(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "query": dict(request.query),
                              "authorization": request.headers.get("Authorization")})
        await asyncio.sleep(self.delay)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {
                "message": "Invalid OAuth access token - Cannot parse access token",
                "type": "OAuthException", "code": 190, "fbtrace_id": "A1b2C3d4E6"}}, status=401)
        dataset = request.match_info["dataset"]
        if dataset not in self.datasets:
            return web.json_response({"error": {
                "message": f"Unsupported get request. Object with ID '{dataset}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                "type": "GraphMethodException", "code": 100, "error_subcode": 33}}, status=400)
        return web.json_response({"id": dataset, "name": self.datasets[dataset]})


class FakeAmoCRM(FakeServer):
    """`GET /api/v4/account` with `Authorization: Bearer <long-lived token>`."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/api/v4/account", self.account)

    async def account(self, request: web.Request) -> web.Response:
        self.requests.append({"authorization": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401,
                                      "detail": "Invalid user name or password"},
                                     status=401, content_type="application/problem+json")
        return web.json_response({"id": 17769199, "name": "Smile Clinic", "subdomain": "clinic"},
                                 content_type="application/hal+json")


class FakeBitrix24(FakeServer):
    """`GET /rest/{user}/{code}/profile`: the webhook code in the path is the credential."""

    def __init__(self, code: str, scope_has_user: bool = True) -> None:
        self.code, self.scope_has_user = code, scope_has_user
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/rest/{user}/{code}/profile", self.profile)

    async def profile(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        if request.match_info["code"] != self.code:
            return web.json_response({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
                                     status=401)
        if not self.scope_has_user:
            return web.json_response({"error": "insufficient_scope",
                                      "error_description": "The request requires higher privileges"}, status=403)
        return web.json_response({"result": {"ID": "1", "ADMIN": True}})
