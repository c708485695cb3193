"""Structured logs: JSON in production, readable text in development, both with request and task ids."""

import io
import json
import logging

import pytest
from django.conf import settings

from config.observability import (
    BOT_ERROR_TEXT,
    ContextFilter,
    bot_update_error,
    error_counts,
    request_id_var,
    task_id_var,
)


def _logger_with(format_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    config = settings.LOGGING
    formatter_config = dict(config["formatters"][format_name])
    factory = formatter_config.pop("()", None)
    if factory:
        module, _, name = factory.rpartition(".")
        formatter = getattr(__import__(module, fromlist=[name]), name)(**formatter_config)
    else:
        formatter = logging.Formatter(formatter_config["format"])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"perps.test.{format_name}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


def test_production_logs_are_json_with_request_and_task_ids():
    from config import settings as settings_module

    assert settings_module.LOGGING["formatters"]["json"]["()"].startswith("pythonjsonlogger")
    logger, stream = _logger_with("json")
    token = request_id_var.set("req-42")
    try:
        logger.info("order %s filled", "P1U2Lentry", extra={"position_id": 7})
    finally:
        request_id_var.reset(token)
    record = json.loads(stream.getvalue())
    assert record["message"] == "order P1U2Lentry filled"
    assert record["request_id"] == "req-42" and record["task_id"] == "-"
    assert record["levelname"] == "INFO" and record["position_id"] == 7


def test_development_logs_are_readable_text_with_ids():
    logger, stream = _logger_with("text")
    token = task_id_var.set("task-9")
    try:
        logger.warning("scan late")
    finally:
        task_id_var.reset(token)
    line = stream.getvalue()
    assert "WARNING perps.test.text [req=- task=task-9] scan late" in line


def test_log_format_follows_the_environment(monkeypatch):
    import importlib

    from config import settings as settings_module

    monkeypatch.setenv("DJANGO_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 50)
    monkeypatch.setenv("FERNET_KEYS", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    try:
        production = importlib.reload(settings_module)
        assert production.LOG_FORMAT == "json"
        assert production.LOGGING["handlers"]["console"]["formatter"] == "json"
    finally:
        monkeypatch.setenv("DJANGO_ENV", "test")
        monkeypatch.undo()
        importlib.reload(settings_module)
    assert settings_module.LOG_FORMAT == "text"


def test_celery_task_log_lines_carry_the_task_id(caplog):
    from config.celery import app

    @app.task(name="config.tests.logging_task")
    def logging_task():
        logging.getLogger("perps.test.task").warning("inside the task")
        return task_id_var.get()

    try:
        with caplog.at_level(logging.WARNING, logger="perps.test.task"):
            result = logging_task.apply()
        record = next(r for r in caplog.records if r.getMessage() == "inside the task")
        assert result.get() == result.id and record.task_id == result.id
        assert task_id_var.get() == "-"  # cleared after the task
    finally:
        app.tasks.pop("config.tests.logging_task", None)


@pytest.mark.django_db
def test_bot_update_error_gives_the_user_a_reference_and_operators_the_trace(caplog):
    from django.core.cache import cache

    cache.clear()
    try:
        raise KeyError("secret detail")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="perps.errors"):
            text = bot_update_error(exc, update_id=123)
    record = next(r for r in caplog.records if r.name == "perps.errors")
    assert text == BOT_ERROR_TEXT.format(reference=record.error_reference)
    assert "secret detail" not in text and record.exc_info is not None and record.update_id == 123
    assert error_counts()["bot_update"] == 1


@pytest.mark.urls("config.tests.urls_boom")
@pytest.mark.django_db
def test_djangos_own_error_line_carries_the_request_id_too(client, caplog):
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR):
        client.get("/boom", HTTP_X_REQUEST_ID="req-77")
    filter_ = ContextFilter()
    django_line = next(r for r in caplog.records if r.name == "django.request")
    filter_.filter(django_line)
    assert django_line.request_id == "req-77"
