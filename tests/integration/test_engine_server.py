"""The HTTP contracts the engine relies on from the server that runs its app (uvicorn, by the patch):
Expect: 100-continue, keep-alive, chunked request bodies, large payloads, one Date header."""

from __future__ import annotations

import http.client
import socket
import uuid

import pytest

from sandbox.settings import Settings
from sandbox.stack import LocalStack

pytestmark = pytest.mark.integration
HEALTH = "/_ministack/health"


def raw_exchange(port: int, request: bytes, *, read_until: bytes = b"\r\n\r\n", timeout: float = 10) -> bytes:
    """Send ``request`` on a fresh connection and read until ``read_until`` has come (or the peer closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while read_until not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_expect_100_continue_is_answered_before_the_body_is_sent(engine_settings: Settings):
    # GIVEN a request that announces a body and waits for 100 Continue before sending it
    body = b'{"TableNames": []}'
    with socket.create_connection(("127.0.0.1", engine_settings.port), timeout=10) as connection:
        connection.sendall(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"X-Amz-Target: DynamoDB_20120810.ListTables\r\n"
            b"Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
            b"SignedHeaders=host, Signature=x\r\n"
            + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        # THEN the server says continue (with a reason phrase: older urllib3 rejects one without)
        interim = connection.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        # AND once the body is sent, the engine answers it
        connection.sendall(body)
        answer = b""
        while b"TableNames" not in answer:
            chunk = connection.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_connection_is_kept_alive_across_requests_and_has_one_date_and_no_server_header(
    engine_settings: Settings,
):
    connection = http.client.HTTPConnection("127.0.0.1", engine_settings.port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", HEALTH)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("connection", "").lower() != "close"
            assert len(response.msg.get_all("date") or []) == 1
            assert response.getheader("server") is None
        # the same socket served all three
        assert connection.sock is not None
    finally:
        connection.close()


def test_a_chunked_request_body_reaches_the_engine_whole(engine_settings: Settings):
    payload = b'{"TableNames": []}'
    chunks = (
        b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (payload[:5], payload[5:]))
        + b"0\r\n\r\n"
    )
    answer = raw_exchange(
        engine_settings.port,
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: DynamoDB_20120810.ListTables\r\n"
        b"Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
        b"SignedHeaders=host, Signature=x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
        read_until=b"TableNames",
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_large_object_goes_in_and_comes_back_whole(stack: LocalStack, engine_settings: Settings):
    s3 = stack.client("s3", engine_settings.region)
    bucket = f"server-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    body = uuid.uuid4().bytes * (6 * 1024 * 1024 // 16)  # 6 MiB: botocore sends Expect: 100-continue
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
