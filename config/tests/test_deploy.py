"""The deployment files: every long-running process has a health check that points at something that exists."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("web", "worker", "beat", "bridge")


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
