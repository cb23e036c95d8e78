"""Packaging: Airflow discovers the provider, its connection form metadata is valid, and
importing it is cheap and side-effect free."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from ibkr_provider.connection_fields import ibkr_conn_fields
from ibkr_provider.get_provider_info import get_provider_info
from scripts.local_airflow import ROOT as REPO_ROOT
from scripts.local_airflow import airflow_env
from tests.support.airflow_cli import AirflowCli

#: What the hook reads, from the one list (connection_fields.py); Airflow's form must show exactly these.
HOOK_FIELDS = set(ibkr_conn_fields())


def _python(code: str, home: Path) -> str:
    """Run ``code`` in a fresh interpreter with an Airflow home of its own; its standard output
    (the run must succeed)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=airflow_env(home, REPO_ROOT / "dags"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_entry_point_and_package_name_match_the_distribution() -> None:
    eps = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("ibkr_provider")
    ]
    assert len(eps) == 1
    info = eps[0].load()()
    assert (
        info["package-name"] == "airflow-provider-ibkr" == metadata.metadata("airflow-provider-ibkr")["Name"]
    )
    assert (REPO_ROOT / "ibkr_provider" / "py.typed").exists()


def test_provider_info_validates_against_airflow_schema() -> None:
    import jsonschema
    from airflow import providers_manager

    schema_path = Path(providers_manager.__file__).parent / "provider_info.schema.json"
    jsonschema.validate(get_provider_info(), json.loads(schema_path.read_text()))


def test_connection_form_declares_every_field_the_hook_reads() -> None:
    from ibkr_provider.hooks.connection import EXTRA_FIELDS

    types = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert set(types) == {"ibkr", "ibkr_oauth2", "ibkr_oauth1a", "ibkr_gateway", "ibkr_flex"}
    flex = types["ibkr_flex"]
    assert flex["hook-class-name"] == "ibkr_provider.hooks.flex.IbkrFlexHook"
    assert flex["ui-field-behaviour"]["relabeling"]["password"] == "Flex token"
    conn_type = types["ibkr"]
    assert conn_type["hook-class-name"] == "ibkr_provider.hooks.ibkr.IbkrHook"
    assert conn_type["hook-name"] == "Interactive Brokers"
    fields = conn_type["conn-fields"]
    assert set(fields) == HOOK_FIELDS == set(EXTRA_FIELDS)
    for name, spec in fields.items():
        assert spec["label"] and spec["description"] and "type" in spec["schema"], name
    assert fields["private_key"]["schema"]["format"] == "password"
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"]["login"] and "port" in behaviour["hidden-fields"]
    # one connection type per auth type: only its own fields, every one read by the hook
    oauth2, oauth1a, gateway = (types[f"ibkr_{a}"]["conn-fields"] for a in ("oauth2", "oauth1a", "gateway"))
    assert {"private_key", "client_key_id", "credential"} <= set(oauth2) and "consumer_key" not in oauth2
    assert {"dh_params", "access_token"} <= set(oauth1a) and "private_key" not in oauth1a
    assert "consumer_key" not in oauth1a and "access_token_secret" not in oauth1a  # login, password
    assert "private_key" not in gateway and "consumer_key" not in gateway and "account_id" in gateway
    assert not any("auth_type" in f for f in (oauth2, oauth1a, gateway))
    typed = set(oauth2) | set(oauth1a) | set(gateway)
    assert typed | {"auth_type", "consumer_key", "access_token_secret"} == set(EXTRA_FIELDS)
    assert "(oauth1a)" not in str(oauth1a) and "(oauth2 only)" not in str(oauth2)
    assert "password" in types["ibkr_gateway"]["ui-field-behaviour"]["hidden-fields"]
    assert types["ibkr_oauth1a"]["hook-class-name"] == "ibkr_provider.hooks.ibkr.IbkrOAuth1aHook"


def test_airflow_lists_the_provider_and_its_connection_form(tmp_path: Path, airflow_cli: AirflowCli) -> None:
    env = airflow_env(tmp_path, REPO_ROOT / "dags")
    providers = airflow_cli.run(["providers", "list", "-o", "json"], env, timeout=120)
    assert providers.returncode == 0, providers.stderr[-2000:]
    listed = {p["package_name"]: p for p in json.loads(providers.stdout)}
    assert listed["airflow-provider-ibkr"]["version"] == metadata.version("airflow-provider-ibkr")
    hooks = airflow_cli.run(["providers", "hooks", "-o", "json"], env, timeout=120)
    assert hooks.returncode == 0, hooks.stderr[-2000:]
    by_type = {h["connection_type"]: h for h in json.loads(hooks.stdout)}
    assert by_type["ibkr"]["class"] == "ibkr_provider.hooks.ibkr.IbkrHook"
    assert by_type["ibkr"]["package_name"] == "airflow-provider-ibkr"

    # Airflow 3.3 builds the UI form from provider metadata only: ask the service behind
    # GET /ui/connections/hook_meta what it would send to the browser.
    script = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == 'ibkr']\n"
        "print(json.dumps(meta.model_dump(mode='json')))\n"
    )
    meta = json.loads(_python(script, tmp_path).strip().splitlines()[-1])
    assert meta["hook_name"] == "Interactive Brokers"
    assert set(meta["extra_fields"]) == HOOK_FIELDS
    assert meta["standard_fields"]["login"]["title"] == "Client id (oauth2) or consumer key (oauth1a)"
    assert meta["standard_fields"]["password"]["title"] == "Access token secret (oauth1a)"
    assert meta["standard_fields"]["port"]["hidden"] is True


def test_loading_the_plugin_builds_no_web_app(tmp_path: Path) -> None:
    """Airflow loads plugins in every process that integrates them (task processes, the
    scheduler, `airflow dags test`); the Connect IBKR app is built on its first request, in the
    API server (the UI test drives it there), not when the plugin is imported."""
    code = (
        "import sys, ibkr_provider.plugins as p\n"
        "print(type(p.IbkrPlugin.fastapi_apps[0]['app']).__name__, "
        "[m for m in ('fastapi', 'ibkr_provider.plugins.connect_app') if m in sys.modules])"
    )
    out = _python(code, tmp_path / "airflow")
    assert out.strip().splitlines()[-1] == "ConnectApp []", out


def test_collecting_the_tests_does_not_import_airflow(tmp_path: Path) -> None:
    """Every xdist worker imports every test module before its first test; Airflow's import costs
    about 3 s of CPU there, per worker (most of `make test-fast`'s start-up on two cores). So the
    test modules import the Airflow side (hooks, operators, sensors, triggers, the plugin) inside
    the tests that use it, and this keeps it so."""
    test_files = (REPO_ROOT / "tests").rglob("test_*.py")
    found = sorted(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts) for path in test_files)
    modules = ["tests.conftest", *found]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))[:5])"
    )
    out = _python(code, tmp_path / "airflow")
    assert len(modules) > 30 and out.strip() == "[]", out


@pytest.mark.parametrize(
    "module",
    ["ibkr_provider", "ibkr_provider.client", "ibkr_provider.get_provider_info"],
)
def test_plain_modules_do_not_import_airflow(module: str) -> None:
    code = (
        f"import sys, {module}; print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_importing_the_hooks_and_every_dag_opens_no_socket(tmp_path: Path) -> None:
    dag_files = sorted(str(p) for p in (REPO_ROOT / "dags").glob("*.py"))
    assert len(dag_files) == 7
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network access at import time')\n"
        "socket.socket.connect = refuse\n"
        "socket.socket.connect_ex = refuse\n"
        "socket.socket.sendto = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "socket.gethostbyname = refuse\n"
        "socket.gethostbyname_ex = refuse\n"
        "import runpy, ibkr_provider.hooks.ibkr, ibkr_provider.hooks.flex\n"
        f"for path in {dag_files!r}:\n"
        "    runpy.run_path(path)\n"
        "    print('ok', path)\n"
    )
    out = _python(code, tmp_path)
    assert [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("ok ")] == dag_files


def test_the_wheel_ships_no_sandbox_and_needs_no_web_server(tmp_path: Path) -> None:
    """The sandbox is a distribution of its own: the provider's wheel neither contains it nor
    requires fastapi or uvicorn."""
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("airflow_provider_ibkr-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_text = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert any(n.startswith("ibkr_provider/client/") for n in names)
    assert not [n for n in names if "sandbox" in n.lower()], names
    requires = [line for line in metadata_text.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = [line for line in requires if "extra ==" not in line]
    assert not [line for line in unconditional if "fastapi" in line or "uvicorn" in line], requires
    assert "Requires-Dist: ibkr-sandbox; extra == 'sandbox'" in requires
