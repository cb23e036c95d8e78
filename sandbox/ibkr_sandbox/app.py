"""The sandbox's HTTP surface: one FastAPI app over one :class:`SandboxState`, assembled from a
router per part of IBKR's Web API (``ibkr_sandbox.routes``) and the Flex Web Service; the
:class:`SandboxControl` wrapper adds pacing and injected faults in front of it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ibkr_sandbox.control import ASGIApp, SandboxControl
from ibkr_sandbox.flex import add_flex_routes
from ibkr_sandbox.routes.authorize import authorize_router
from ibkr_sandbox.routes.common import Gate, SandboxHttpError
from ibkr_sandbox.routes.control import control_router
from ibkr_sandbox.routes.login import login_router
from ibkr_sandbox.routes.market import market_router
from ibkr_sandbox.routes.orders import order_router
from ibkr_sandbox.routes.portfolio import portfolio_router
from ibkr_sandbox.routes.session import session_router
from ibkr_sandbox.routes.stream import stream_router
from ibkr_sandbox.state import SandboxState


def create_app(state: SandboxState, flex_token: str = "") -> ASGIApp:
    """Build the sandbox's ASGI app over ``state`` (one app per sandbox process); with a
    ``flex_token`` it also serves the Flex Web Service."""
    app = FastAPI(title="IBKR Web API sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    if flex_token:
        add_flex_routes(app, state, flex_token)

    @app.exception_handler(SandboxHttpError)
    async def _sandbox_error(_: Request, exc: SandboxHttpError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    gate = Gate(state)
    routers = (
        login_router,
        authorize_router,
        session_router,
        order_router,
        market_router,
        portfolio_router,
        stream_router,
        control_router,
    )
    for router in routers:
        app.include_router(router(gate))
    return SandboxControl(app, state)
