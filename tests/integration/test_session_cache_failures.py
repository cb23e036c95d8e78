"""When the shared session cache fails (issue 30): a Redis that never answers or refuses, a record
written with another host's Fernet key. Each is a named error or a named warning, never a hang,
a silent new login, or a Redis password in a message."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrErrorCode, IbkrSessionError
from scripts.local_airflow import free_port


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://:s3cret-pass@127.0.0.1:{listener.getsockname()[1]}/1"


def test_a_redis_that_never_answers_is_a_named_error_within_its_timeout(silent_redis: str) -> None:
    from ibkr_provider.client.session.stores.redis_store import REDIS_READ_TIMEOUT_SECONDS, RedisSessionStore

    default = RedisSessionStore(silent_redis)
    assert default._redis.connection_pool.connection_kwargs["socket_timeout"] == REDIS_READ_TIMEOUT_SECONDS
    assert default._redis.connection_pool.connection_kwargs["socket_connect_timeout"] > 0
    default.close()
    store = RedisSessionStore(silent_redis, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(IbkrSessionError) as excinfo:
        store.load("key")
    assert time.monotonic() - started < 5
    error = excinfo.value
    assert error.code is IbkrErrorCode.SESSION_CACHE and not error.permanent
    assert str(error).startswith("session_cache: Redis at redis://:***@127.0.0.1:")
    assert "s3cret-pass" not in str(error) and "session_cache" in error.hint
    store.close()


def test_a_refused_redis_names_session_cache_without_its_password(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/1"  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json(session_cache=url))
    ok, message = IbkrHook().test_connection()
    assert not ok and message.startswith("IbkrSessionError: session_cache: Redis at redis://:***@"), message
    assert "s3cret-pass" not in message and "Unexpected" not in message
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_a_record_from_another_fernet_key_is_named_once_and_in_the_test(
    monkeypatch: pytest.MonkeyPatch,
    fresh_sandbox: RunningSandbox,
    isolated_session_cache: Path,
) -> None:
    """Host A wrote the shared record with its Fernet key; host B (another key) cannot read it."""
    from ibkr_provider.client.session.stores import base as stores
    from ibkr_provider.hooks.ibkr import IbkrHook

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json(session_cache="file"))
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    ok, message = IbkrHook().test_connection()
    assert ok and "could not be read" not in message, message

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())  # host B
    stores._unreadable_said.clear()
    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    stores.log.addHandler(handler)  # Airflow's logging set-up replaces the root's handlers
    try:
        ok, message = IbkrHook().test_connection()
        assert ok and "the shared session record could not be read" in message, message
        assert "fernet_key" in message
        IbkrHook().test_connection()
    finally:
        stores.log.removeHandler(handler)
    warned = [m for m in said if "[ibkr-session-record-unreadable]" in m]
    assert len(warned) == 1 and "different [core] fernet_key" in warned[0]
    assert list(isolated_session_cache.glob("*.session"))


def test_closed_clients_leave_no_descriptor_open(fresh_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Each client's file cache opened pacing descriptors that outlived it (30 Tests, 31)."""
    import os

    from ibkr_provider.client import IbkrClient, IbkrClientConfig

    values = fresh_sandbox.client_config_values(session_cache="file", session_cache_dir=str(tmp_path))
    config = IbkrClientConfig.from_mapping(values)

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    with IbkrClient(config) as warm:
        warm.account_summary("DU1234567")
    before = open_descriptors()
    for _ in range(30):
        with IbkrClient(config) as client:
            client.account_summary("DU1234567")  # paced: the pacing bucket's descriptor opens
    assert open_descriptors() <= before


def test_logout_forgets_the_shared_record(fresh_sandbox: RunningSandbox, tmp_path: Path) -> None:
    from ibkr_provider.client import IbkrClient, IbkrClientConfig

    values = fresh_sandbox.client_config_values(session_cache="file", session_cache_dir=str(tmp_path))
    with IbkrClient(IbkrClientConfig.from_mapping(values)) as client:
        client.connect()
        assert list(tmp_path.glob("*.session"))
        client.logout()
    assert not list(tmp_path.glob("*.session"))
    assert fresh_sandbox.stats()["paths"].get("POST /v1/api/logout") == 1
    assert json.dumps(fresh_sandbox.stats())  # the sandbox is still serving
