"""The deployment files: every long-running process has a health check that points at something that exists."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("web", "worker", "trader", "beat", "bridge")


def test_compose_services_have_health_checks_and_restart():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in PROCESSES:
        service = services[name]
        test = service["healthcheck"]["test"]
        command = " ".join(test[1:]) if isinstance(test, list) else test
        assert command.strip(), name
        if name in ("beat", "bridge"):
            assert f"manage.py healthcheck {name}" in command
        assert service.get("restart", "unless-stopped") != "no"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])


def test_procfile_and_systemd_units_cover_every_process():
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line)
    units = {p.name for p in (ROOT / "deploy" / "systemd").iterdir()}
    for name in PROCESSES:
        assert name in procfile
        assert f"perps-{name}.service" in units
    assert {"perps-health@.service", "perps-health@.timer", "perps-healthcheck.service"} <= units
    assert "healthcheck %i" in (ROOT / "deploy" / "systemd" / "perps-health@.service").read_text()


def test_the_health_endpoints_and_command_exist(client, db):
    from django.core.management import get_commands

    assert "healthcheck" in get_commands()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_the_web_server_is_the_same_everywhere_and_the_load_tests_run_the_procfiles():
    """uvicorn worker processes; the load and fault tests start the
    Procfile's command, so what they measure is what runs in production."""
    from config.tests.ops_processes import web_command

    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    unit = next(
        line
        for line in (ROOT / "deploy" / "systemd" / "perps-web.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    flags = [
        "config.asgi:application",
        "--loop uvloop",
        "--http httptools",
        "--ws wsproto",
        "--lifespan off",
        "--no-access-log",
        "--timeout-graceful-shutdown 20",
    ]
    for command in (procfile["web"], " ".join(compose), unit):
        assert "uvicorn " in command and "--workers ${WEB_CONCURRENCY" in command, command
        assert all(flag in command for flag in flags), command
    argv = web_command(port=8123, env={"WEB_CONCURRENCY": "3"})
    assert argv[0].endswith("uvicorn") and argv[1] == "config.asgi:application"
    assert " ".join(argv[2:]).startswith("--host 127.0.0.1 --port 8123 --workers 3 ")
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert {"uvloop", "httptools", "wsproto", "uvicorn"} <= {
        line.split("==")[0] for line in requirements if "==" in line
    }


def _queues(command: str) -> set[str]:
    parts = command.split()
    return set(parts[parts.index("-Q") + 1].split(","))


def test_trade_execution_has_its_own_worker_process_everywhere():
    """Orders never wait behind bot traffic, broadcasts or scans: the `trade` queue is consumed by a process of its own
    (Procfile `trader`, compose service `trader`, systemd perps-trader) and by no other worker."""
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    units = {
        name: next(
            line
            for line in (ROOT / "deploy" / "systemd" / f"perps-{name}.service").read_text().splitlines()
            if line.startswith("ExecStart=")
        )
        for name in ("worker", "trader")
    }
    for commands in (
        (procfile["worker"], procfile["trader"]),
        (" ".join(compose["worker"]["command"]), " ".join(compose["trader"]["command"])),
        (units["worker"], units["trader"]),
    ):
        worker, trader = commands
        assert _queues(trader) == {"trade"}, trader
        assert "trade" not in _queues(worker) and {"telegram", "scan", "default"} <= _queues(worker), worker
        assert "trader@" in trader and "worker@" in worker  # distinct node names on one host
    assert "inspect ping -d trader@" in " ".join(compose["trader"]["healthcheck"]["test"])
    assert compose["trader"].get("restart", "unless-stopped") != "no"


def test_every_process_gets_30_seconds_to_stop_and_its_own_budget_is_below_that():
    """docker-compose and systemd wait 30 s after SIGTERM (then SIGKILL); what each process allows itself is less:
    uvicorn's in-flight requests 20 s, the worker's running tasks WORKER_SHUTDOWN_GRACE_SECONDS plus the cold
    shutdown (measured under 10 s). config/tests/test_graceful_shutdown.py measures the real processes."""
    import re

    from django.conf import settings

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in PROCESSES:
        assert services[name]["stop_grace_period"] == "30s", name
        unit = (ROOT / "deploy" / "systemd" / f"perps-{name}.service").read_text()
        assert "TimeoutStopSec=30\n" in unit and "KillSignal=SIGTERM\n" in unit, name
        assert "KillMode=mixed\n" in unit, name  # SIGTERM to the main process only, as docker does
    procfile = (ROOT / "Procfile").read_text()
    assert int(re.search(r"--timeout-graceful-shutdown (\d+)", procfile)[1]) <= 20
    assert settings.WORKER_SHUTDOWN_GRACE_SECONDS + 10 <= 30
