"""The console's web app: the page, its JSON endpoints and the live event stream.

Any stack's state machines are drawn from the definitions the engine holds and their executions
listed and traced (``machines``); the orders, their form and the dead letters are the demo's.

Every endpoint calls the library the CLI calls (``OrdersClient``, ``run_order``, the trace,
``list_dead_letters``/``redrive``, ``running_engine``): the console has no way of its own to read
the engine. Refusals are JSON ``{"error", "hint"}`` with a 4xx status and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sandbox.console.details import state_visits
from sandbox.console.forms import FormError, parse_order_form
from sandbox.console.graph import draw_graph, read_definition
from sandbox.console.live import OrderWatcher
from sandbox.console.machines import NoOrderApi, execution_view, list_executions, list_machines, machine_graph
from sandbox.dlq import list_dead_letters, redrive
from sandbox.engine import running_engine
from sandbox.errors import EngineNotRunningError, OrderError, SandboxError, StackNotFoundError
from sandbox.executions import ExecutionNotFoundError, StateMachineNotFoundError
from sandbox.orders import OrdersClient
from sandbox.runs import run_order
from sandbox.settings import Settings
from sandbox.stack import LocalStack, find_stack, physical_id
from sandbox.trace import OrderNotFoundError, build_trace, collect_sources

STATIC_DIR = Path(__file__).with_name("static")
SAGA_DEFINITION = Path("state_machines") / "order_saga.asl.json"
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# How OrdersClient words a refusal of the order API (run_order raises it as an OrderError).
API_REFUSAL = re.compile(r"^the order API answered (4\d\d): (.*)$", re.DOTALL)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


class RequestRefusedError(SandboxError):
    """A console request refused with an HTTP status and a message saying why."""

    def __init__(self, status: int, message: str, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, ensure_ascii=False).encode()


@dataclass
class Console:
    """What the endpoints share: the settings, the demo saga's definition (when there) and the watcher."""

    settings: Settings
    definition: dict[str, Any] | None
    watcher: OrderWatcher

    def stack(self) -> LocalStack:
        return find_stack(self.settings)

    def client(self) -> OrdersClient:
        stack = self.stack()
        return OrdersClient(stack.api_url) if stack.is_demo else NoOrderApi()

    def demo_stack(self) -> LocalStack:
        """The stack, when it is the demo's; the order endpoints refuse any other."""
        stack = self.stack()
        if not stack.is_demo:
            raise RequestRefusedError(
                404,
                f"stack {self.settings.stack_name} has no orders (they are the demo's)",
                hint="open one of its state machines' executions instead",
            )
        return stack

    def saga_definition(self) -> dict[str, Any]:
        if self.definition is None:
            raise RequestRefusedError(
                404, "the demo's saga definition is not here", hint="open a state machine"
            )
        return self.definition

    def describe(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order as the page shows it: the API's view and the graph with its path."""
        return {
            "orderId": order["orderId"],
            "order": order,
            "graph": draw_graph(self.saga_definition(), order),
        }


def checked_order_id(request: Request) -> str:
    order_id = str(request.path_params["order_id"])
    if not ORDER_ID.match(order_id):
        raise RequestRefusedError(
            400, f"{order_id[:80]!r} is not an order id", hint="pick an order from the list"
        )
    return order_id


def memory_mib() -> float:
    """This process's resident memory now (Linux), else its peak."""
    with suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def create_app(settings: Settings, *, scan_interval: float = 0.5, follow_interval: float = 0.2) -> Starlette:
    """The console for the stack of ``settings`` (its engine need not run yet: the page says so)."""
    saga_file = settings.project_dir / SAGA_DEFINITION
    definition = read_definition(saga_file) if saga_file.is_file() else None
    holder: dict[str, Console] = {}
    watcher = OrderWatcher(
        connect=lambda: holder["console"].client(),
        describe=lambda order: holder["console"].describe(order),
        scan_interval=scan_interval,
        follow_interval=follow_interval,
    )
    console = holder["console"] = Console(settings, definition, watcher)
    started = time.time()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    def graph(request: Request) -> Response:
        if definition is not None:
            return JsonResponse({"graph": draw_graph(definition)})
        # Another project's stack: its state machine, drawn from what the engine holds.
        stack = console.stack()
        machines = list_machines(stack, settings.region, settings.stack_name)
        if not machines:
            raise RequestRefusedError(404, f"stack {settings.stack_name} has no state machine")
        return JsonResponse(machine_graph(stack, settings.region, settings.stack_name, machines[0]["arn"]))

    def machines(request: Request) -> Response:
        stack = console.stack()
        return JsonResponse(
            {
                "stateMachines": list_machines(stack, settings.region, settings.stack_name),
                "isDemo": stack.is_demo,
            }
        )

    def machine_detail(request: Request) -> Response:
        ref = str(request.path_params["machine"])
        return JsonResponse(machine_graph(console.stack(), settings.region, settings.stack_name, ref))

    def machine_executions(request: Request) -> Response:
        ref = str(request.path_params["machine"])
        return JsonResponse(list_executions(console.stack(), settings.region, settings.stack_name, ref))

    def execution_detail(request: Request) -> Response:
        ref = str(request.path_params["execution"])
        return JsonResponse(execution_view(console.stack(), settings.region, settings.stack_name, ref))

    async def orders(request: Request) -> Response:
        listed = watcher.orders
        if listed is None:
            listed = await run_in_threadpool(lambda: console.client().list_orders())
        return JsonResponse({"orders": listed})

    async def place(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # Only a page's script sends JSON: a cross-site form post is refused here.
            raise RequestRefusedError(415, "send the form as application/json")
        try:
            form = json.loads(await request.body())
        except ValueError as error:
            raise FormError("the body is not JSON: send the form's fields as a JSON object") from error
        order = parse_order_form(form)
        stack = await run_in_threadpool(console.demo_stack)
        try:
            run = await run_in_threadpool(
                lambda: run_order(
                    OrdersClient(stack.api_url), order, follow=False, local=(stack, settings.region)
                )
            )
        except OrderError as error:
            refusal = API_REFUSAL.match(str(error))
            if refusal is None:
                raise
            raise RequestRefusedError(
                int(refusal[1]), f"the order API refused the order: {refusal[2]}", hint=error.hint
            ) from error
        watcher.follow(run.placed, order.customer_id)
        body = {**run.to_json(), "customerId": order.customer_id, "faults": order.faults}
        return JsonResponse(body, status_code=201)

    def order_detail(request: Request) -> Response:
        order_id = checked_order_id(request)
        response = console.client().get_order(order_id)
        if response.status == 404:
            raise RequestRefusedError(
                404, f"order {order_id} not found", hint="pick an order from the list, or place one"
            )
        if response.status >= 400:
            raise RequestRefusedError(502, f"the order API answered {response.status} for order {order_id}")
        return JsonResponse(console.describe(dict(response.body)))

    def order_trace(request: Request) -> Response:
        order_id = checked_order_id(request)
        # What trace_order reads, kept: its saga history also gives each state's input and output.
        sources = collect_sources(console.demo_stack(), settings, order_id)
        return JsonResponse(
            {"trace": build_trace(sources).to_json(), "states": state_visits(sources.history or [])}
        )

    def dead_letters(request: Request) -> Response:
        letters = list_dead_letters(console.demo_stack(), settings.region)
        return JsonResponse({"deadLetters": [letter.as_dict() for letter in letters]})

    def redrive_letters(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise RequestRefusedError(415, "send the request as application/json")
        stack = console.demo_stack()
        publisher = physical_id(stack, settings.region, settings.stack_name, "OutboxPublisherFunction")
        return JsonResponse({"redriven": redrive(stack, settings.region, publisher)})

    def status(request: Request) -> Response:
        state = running_engine(settings)
        stack = find_stack(settings)
        return JsonResponse(
            {
                "engine": {
                    "name": state.engine,
                    "endpoint": state.endpoint_url,
                    "pid": state.pid,
                    "container": state.container_name or state.container_id,
                    "uptimeSeconds": int(time.time() - state.started_at),
                },
                "stack": {
                    "name": settings.stack_name,
                    "region": settings.region,
                    "apiUrl": stack.api_url if stack.is_demo else None,
                    "isDemo": stack.is_demo,
                },
                "console": {
                    "pid": os.getpid(),
                    "memoryMiB": round(memory_mib(), 1),
                    "uptimeSeconds": int(time.time() - started),
                    "listeners": watcher.listeners,
                    "polls": watcher.polls,
                },
            }
        )

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            async for event in watcher.listen():
                yield event.encode()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, SandboxError)
        if isinstance(error, RequestRefusedError):
            code = error.status
        elif isinstance(error, FormError):
            code = 400
        elif isinstance(error, OrderNotFoundError | ExecutionNotFoundError | StateMachineNotFoundError):
            code = 404
        elif isinstance(error, EngineNotRunningError | StackNotFoundError):
            code = 503
        else:
            code = 502
        return JsonResponse({"error": str(error), "hint": error.hint}, status_code=code)

    async def engine_refused(request: Request, error: Exception) -> Response:
        return JsonResponse(
            {
                "error": f"the engine refused a request: {error}",
                "hint": "is the engine healthy? see `sandbox status`",
            },
            status_code=502,
        )

    async def no_such_path(request: Request, error: Exception) -> Response:
        return JsonResponse(
            {"error": f"the console has no {request.url.path}", "hint": "open the console at /"},
            status_code=404,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        polling = asyncio.create_task(watcher.run())
        try:
            yield
        finally:
            polling.cancel()
            with suppress(asyncio.CancelledError):
                await polling

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/graph", graph),
            Route("/api/orders", orders),
            Route("/api/orders", place, methods=["POST"]),
            Route("/api/orders/{order_id}", order_detail),
            Route("/api/orders/{order_id}/trace", order_trace),
            Route("/api/state-machines", machines),
            Route("/api/state-machines/{machine:path}/executions", machine_executions),
            Route("/api/state-machines/{machine:path}", machine_detail),
            Route("/api/executions/{execution:path}", execution_detail),
            Route("/api/dead-letters", dead_letters),
            Route("/api/dead-letters/redrive", redrive_letters, methods=["POST"]),
            Route("/api/status", status),
            Route("/api/events", events),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        # Served on 127.0.0.1 only; a page of another site reaching it through a name of its own
        # (DNS rebinding) is refused by its Host header.
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)],
        exception_handlers={
            SandboxError: refused,
            ClientError: engine_refused,
            BotoCoreError: engine_refused,
            404: no_such_path,
        },
        lifespan=lifespan,
    )
    app.state.console = console
    return app
