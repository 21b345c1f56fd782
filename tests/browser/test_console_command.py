"""`sandbox ui` as a person runs it: its own process, on 127.0.0.1 only, the page live; what it costs.

Measured here (and printed on the browser tests' summary line): the time from an order's terminal
state (its status written, ``updatedAt``) to the page showing it, for orders placed from the page
and elsewhere (the library, as the CLI does), and the console process's memory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine import find_free_port
from sandbox.orders import OrdersClient
from sandbox.runs import OrderRequest, run_order
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from tests.browser.conftest import ConsolePage
from tests.processes import SANDBOX, as_from_a_terminal, finish, run_sandbox

pytestmark = pytest.mark.integration
ROUNDS = 6  # orders of each kind: placed from the page, placed elsewhere
TARGET_MS = 1000


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output; empty if it printed none in time."""
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.append(process.stdout.readline() if process.stdout else "")
    )
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def interface_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def accepts(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        return client.connect_ex((address, port)) == 0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def latency_ms(page: ConsolePage, api: OrdersClient, order_id: str) -> float:
    """From the order's terminal state (its status written) to the list showing it ended."""
    page.wait_for_status(order_id)
    shown_at = float(page.row(order_id).get_attribute("data-shown-at"))
    ended_at = datetime.fromisoformat(api.get_order(order_id).body["updatedAt"]).timestamp() * 1000
    return shown_at - ended_at


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms"


def test_sandbox_ui_serves_the_live_page_on_loopback_only(
    browser: Any,
    engine_settings: Settings,
    api: OrdersClient,
    stack: LocalStack,
    console_figures: dict[str, str],
):
    figures = console_figures
    port = find_free_port()
    env = {
        **os.environ,
        "SANDBOX_PORT": str(engine_settings.port),
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
    }
    process = subprocess.Popen(
        [SANDBOX, "ui", "--port", str(port), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    try:
        line = first_line(process, timeout=60)
        assert line, f"`sandbox ui` said nothing: {process.poll()=}"
        ready = json.loads(line)
        assert ready == {"url": f"http://127.0.0.1:{port}/", "host": "127.0.0.1", "port": port}
        address = interface_address()
        if address is not None:
            assert not accepts(address, port), (
                f"the console answers on {address}: it must serve 127.0.0.1 only"
            )
        idle = memory_kib(process.pid)

        page = ConsolePage(browser, ready["url"])
        page.open()
        from_page = [latency_ms(page, api, page.place(items="mug:1")) for _ in range(ROUNDS)]
        elsewhere = []
        for round_ in range(ROUNDS):
            faults = {"fail": "payment"} if round_ % 2 else None
            run = run_order(
                api, OrderRequest(items=({"productId": "mug", "quantity": 1},), faults=faults), follow=False,
                local=(stack, engine_settings.region),
            )  # fmt: skip
            elsewhere.append(latency_ms(page, api, run.order_id))
        busy = memory_kib(process.pid)
        figures["terminal state → page (placed on the page)"] = summary(from_page)
        figures["terminal state → page (placed elsewhere)"] = summary(elsewhere)
        figures["console memory"] = (
            f"RSS {idle['VmRSS'] / 1024:.0f} MiB idle, {busy['VmRSS'] / 1024:.0f} MiB after "
            f"{2 * ROUNDS} orders, peak {busy['VmHWM'] / 1024:.0f} MiB"
        )
        assert statistics.median(from_page) < TARGET_MS, from_page
        assert statistics.median(elsewhere) < TARGET_MS, elsewhere
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        result = finish(process, timeout=30, what="`sandbox ui` to stop on Ctrl-C")
    assert "Traceback" not in result.stderr, result.stderr


def test_sandbox_ui_without_an_engine_says_what_to_run(tmp_path: Path):
    env = {**os.environ, "SANDBOX_STATE_DIR": str(tmp_path), "SANDBOX_PORT": str(find_free_port())}

    result = run_sandbox("ui", "--port", str(find_free_port()), env=env)

    assert result.returncode == 1
    assert "no sandbox engine is running" in result.stderr and "sandbox up" in result.stderr


def test_sandbox_ui_on_a_port_in_use_says_so(engine_settings: Settings):
    env = {
        **os.environ,
        "SANDBOX_PORT": str(engine_settings.port),
        "SANDBOX_STATE_DIR": str(engine_settings.state_dir),
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_sandbox("ui", "--port", str(port), env=env)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_the_cli_loads_no_web_server_until_the_console_is_asked_for():
    # `sandbox up` (and every other command) imports cli.app: the console must cost it nothing.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli.app; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('starlette', 'uvicorn') or m.startswith('sandbox.console.')))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip

    assert loaded == "[]"
