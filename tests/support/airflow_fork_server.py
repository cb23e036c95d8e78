"""A warm interpreter that runs the real ``airflow`` command in forked children.

A cold ``airflow dags test`` of the snapshot DAG costs about 14 CPU seconds here, 10 of them
before the DAG's first task: importing Airflow and its CLI, then Cadwyn building the versioned
routers of the in-process execution API that ``dags test`` runs its tasks through. This process
pays that once: it imports Airflow and the CLI (and exchange_calendars, which the example DAGs'
timetable imports), builds that in-process API (Airflow keeps one per process,
``in_process_api_server``) and answers one request through it so Cadwyn generates its routers,
freezes its heap for the garbage collector, then forks a child per command. The same
run costs about 4 CPU seconds (a dry-run rebalance 4.1 instead of 14-16). Airflow starts its own
task processes the same way: its supervisor forks them from a warm parent.

A child is the command as a user runs it: it takes the test's environment and working directory,
reads Airflow's configuration and settings again from that environment (AIRFLOW_HOME, airflow.cfg,
the metadata database, the DAG folder, logging), writes its output to the files it was given and
runs ``airflow.__main__.main`` (the ``airflow`` script's entry point) with the test's arguments
in a session of its own, so a test can kill it and anything it started. tests/e2e/
test_airflow_cli.py compares a forked command's effective configuration with a fresh process's.

Protocol (JSON, a line each way): ``{"op": "spawn", "args", "env", "cwd", "stdout", "stderr"}``
answers ``{"pid"}``; ``{"op": "poll", "pid"}`` answers ``{"returncode"}``, null while it runs.
The server exits when its standard input closes.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import importlib
import json
import logging
import os
import sys
import threading
from typing import IO, Any, NoReturn

#: The Airflow minor version whose internals this server was written against (and checked on):
#: ``in_process_api_server``, Cadwyn's routers, the configuration reload in the child.
WRITTEN_FOR = "3.3"


def check_airflow_version(version: str) -> None:
    """Refuse an Airflow the warm-up and the child's reload were not written for: a silent
    difference there would run the tests against a half-configured Airflow."""
    if version.split(".")[:2] != WRITTEN_FOR.split("."):
        raise SystemExit(
            f"tests/support/airflow_fork_server.py was written for Airflow {WRITTEN_FOR}.x, this is "
            f"{version}: check in_process_api_server, the CLI parser warm-up and _reload_airflow_"
            "configuration against this version (tests/e2e/test_airflow_cli.py compares a forked "
            "command with a fresh one), then update WRITTEN_FOR; or run the suite without the fork "
            "server: IBKR_TEST_FORK_SERVER=off make test"
        )


def _warm_up() -> None:
    """Import and build what every ``airflow`` command would otherwise redo on its own."""
    import airflow
    import airflow.__main__

    check_airflow_version(airflow.__version__)
    import httpx
    from airflow.cli import cli_parser
    from airflow.cli.commands import dag_command  # noqa: F401  (imported lazily by `dags test`)

    # The trading-day timetable of the rebalance, DCA and risk DAGs imports exchange_calendars
    # (and pandas) when a `dags test` syncs the DAG: 0.2 s of each such command, paid once here.
    importlib.import_module("exchange_calendars")
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    cli_parser.get_parser()
    app = in_process_api_server().app

    async def ping() -> int:
        # Within the app's lifespan, as the in-process transport runs it; on this thread's own
        # event loop, so no thread is left running when the server forks.
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://in-process") as client,
        ):
            return (await client.get("/health/ping")).status_code

    status = asyncio.run(ping())
    if status != 200:
        raise RuntimeError(f"the in-process execution API answered {status} to /health/ping")


def _serve(requests: IO[str], replies: IO[str]) -> dict[str, Any] | None:
    """Answer requests until standard input closes; in a forked child, return its request."""
    for line in requests:
        request = json.loads(line)
        if request["op"] == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                return request
            answer: dict[str, Any] = {"pid": pid}
        elif request["op"] == "poll":
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            answer = {"returncode": os.waitstatus_to_exitcode(status) if done else None}
        else:
            raise ValueError(f"unknown request {request['op']!r}")
        replies.write(json.dumps(answer) + "\n")
        replies.flush()
    return None


def _reload_airflow_configuration() -> None:
    """Read Airflow's configuration and settings again from this process's environment, as a
    fresh ``airflow`` process would at import (the server's own environment is not the test's).

    Besides the two configuration objects and the settings module, a few Airflow modules keep a
    value read at import: those are set again here, and ``_check_nothing_points_at_the_server``
    fails the command if any module still holds a path of the server's home.
    """
    from airflow import configuration, settings
    from airflow.sdk import configuration as sdk_configuration

    # A fresh process reads its configuration before it has configured logging, so says nothing
    # ("Reading the config from ..." would land on stdout here, ahead of `-o json` output).
    logging.disable(logging.INFO)
    configuration.AIRFLOW_HOME = configuration.get_airflow_home()
    configuration.AIRFLOW_CONFIG = configuration.get_airflow_config(configuration.AIRFLOW_HOME)
    for name, folder in (("TEST_DAGS_FOLDER", "dags"), ("TEST_PLUGINS_FOLDER", "plugins")):
        if not os.path.exists(getattr(configuration, "_" + name)):  # as the module computes them
            setattr(configuration, name, os.path.join(configuration.AIRFLOW_HOME, folder))
    # Airflow's own pickling round trip: the same object every module imported, new contents.
    configuration.conf.__setstate__(configuration.initialize_config().__getstate__())
    configuration.secrets_backend_list[:] = configuration.initialize_secrets_backends()
    if "conf" in vars(sdk_configuration):  # the Task SDK's own parser, built on first use
        sdk_conf = sdk_configuration.conf
        sdk_conf.__init__()  # type: ignore[misc]
        if sdk_conf.getboolean("core", "unit_test_mode", fallback=False):
            sdk_conf.load_test_config()
    logging.disable(logging.NOTSET)
    # The logging configuration settings.initialize applies (task logs' BASE_LOG_FOLDER).
    importlib.reload(importlib.import_module("airflow.config_templates.airflow_local_settings"))
    settings.AIRFLOW_HOME = configuration.AIRFLOW_HOME
    settings.dispose_orm(do_log=False)
    settings.initialize()
    importlib.import_module("airflow.serialization.serialized_objects").DAGS_FOLDER = settings.DAGS_FOLDER
    importlib.import_module("airflow.sdk.definitions.asset").SQL_ALCHEMY_CONN = settings.SQL_ALCHEMY_CONN
    # The task supervisor's timings (the warm-up imported it with the server's configuration).
    supervisor = importlib.import_module("airflow.sdk.execution_time.supervisor")
    for name, section, key, read in _SUPERVISOR_SETTINGS:
        setattr(supervisor, name, getattr(supervisor.conf, read)(section, key))


#: ``airflow.sdk.execution_time.supervisor``'s module constants read from the configuration.
_SUPERVISOR_SETTINGS = (
    ("HEARTBEAT_TIMEOUT", "scheduler", "task_instance_heartbeat_timeout", "getint"),
    ("MIN_HEARTBEAT_INTERVAL", "workers", "min_heartbeat_interval", "getint"),
    ("MAX_FAILED_HEARTBEATS", "workers", "max_failed_heartbeats", "getint"),
    ("SOCKET_CLEANUP_TIMEOUT", "workers", "socket_cleanup_timeout", "getfloat"),
    ("TASK_OVERTIME_THRESHOLD", "core", "task_success_overtime", "getfloat"),
)


def _check_nothing_points_at_the_server(server_home: str) -> None:
    stale = [
        f"{name}.{attribute}"
        for name, module in list(sys.modules.items())
        if module is not None and name not in ("__main__", "__mp_main__")
        for attribute, value in list(vars(module).items())
        if isinstance(value, str) and server_home in value
    ]
    if stale:
        raise RuntimeError(f"still the fork server's AIRFLOW_HOME after the reload: {stale}")


def _become_the_command(request: dict[str, Any], replies: IO[str]) -> None:
    os.setsid()
    replies.close()
    with open(os.devnull) as devnull:
        os.dup2(devnull.fileno(), 0)
    with open(request["stdout"], "a") as out:
        os.dup2(out.fileno(), 1)
    with open(request["stderr"], "a") as err:
        os.dup2(err.fileno(), 2)
    os.chdir(request["cwd"])
    server_home = os.environ["AIRFLOW_HOME"]
    os.environ.clear()
    os.environ.update(request["env"])
    _reload_airflow_configuration()
    _check_nothing_points_at_the_server(server_home)
    sys.argv = ["airflow", *request["args"]]
    sys.path[0] = os.path.dirname(sys.executable)  # as for the `airflow` script beside it


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what Airflow prints while it loads goes to the server's log, not the replies
    _warm_up()
    # AnyIO's worker thread (the request's sync dependencies ran on it) stops on its own once the
    # event loop is closed; a child forked while another thread runs could inherit a held lock.
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=30)
    if threading.active_count() != 1:
        raise RuntimeError(f"threads left running after the warm-up: {threading.enumerate()}")
    # Children share the warm heap copy-on-write; the collector would walk (and so copy) all of
    # it in every child's first full collection. Frozen objects are never examined.
    gc.collect()
    gc.freeze()
    replies.write(json.dumps({"ready": os.getpid()}) + "\n")
    replies.flush()
    request = _serve(sys.stdin, replies)
    if request is None:
        return
    _become_the_command(request, replies)
    from airflow.__main__ import main as airflow_main

    try:
        airflow_main()
    except SystemExit as done:
        exit_without_teardown(done.code)
    exit_without_teardown(0)


def exit_without_teardown(code: object) -> NoReturn:
    """End the process as ``sys.exit(code)`` would, without the interpreter's teardown: its exit
    handlers run (Airflow's, logging's flush, multiprocessing's) and then it leaves. Tearing down
    a heap the size of Airflow's cost a two-task `dags test` 0.1 s of its 0.7 s; the pytest
    workers end this way too (tests/conftest.py). An exception other than ``SystemExit`` still
    ends the normal way."""
    if isinstance(code, int) or code is None:
        status = code or 0
    else:  # sys.exit("message"): printed, status 1
        sys.stderr.write(f"{code}\n")
        status = 1
    atexit._run_exitfuncs()  # the handlers os._exit would skip
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
