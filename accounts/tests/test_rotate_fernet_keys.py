"""`manage.py rotate_fernet_keys`: every stored credential ends up encrypted under the newest key in FERNET_KEYS,
still decrypts (also once the old key is removed), nothing secret is printed, and bad keys give a clear error."""

from __future__ import annotations

import io
import logging

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from accounts.crypto import SecretDecryptionError
from accounts.models import ApiSecrets, ExchangeCredential
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SECRETS = [
    ApiSecrets(api_key="AK-rotate-0001-aaaa", secret="SK-rotate-secret-one", passphrase="first passphrase"),
    ApiSecrets(api_key="AK-rotate-0002-bbbb", secret="SK-rotate-secret-two", passphrase=""),
    ApiSecrets(api_key="AK-rotate-0003-cccc", secret="SK-rotate-secret-three", passphrase="third passphrase"),
]
ENCRYPTED_FIELDS = ("api_key_encrypted", "api_secret_encrypted", "passphrase_encrypted")


def _rotate() -> str:
    """Run the command; return everything it printed (stdout and stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_fernet_keys", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def _plaintexts() -> list[str]:
    return [value for s in SECRETS for value in (s.api_key, s.secret, s.passphrase) if value]


@pytest.fixture
def stored_under_old_key(settings):
    settings.FERNET_KEYS = [OLD_KEY]
    credentials = []
    for secrets in SECRETS:
        credential = ExchangeCredentialFactory(user=TelegramUserFactory(), secrets=secrets)
        credentials.append(credential)
    return credentials


@pytest.mark.django_db
def test_rotation_re_encrypts_every_credential_under_the_new_key(settings, stored_under_old_key, caplog):
    before = {c.pk: {f: getattr(c, f) for f in ENCRYPTED_FIELDS} for c in ExchangeCredential.objects.all()}
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]

    with caplog.at_level(logging.DEBUG):
        output = _rotate()

    assert "Re-encrypted 3 credential(s)" in output
    new, old = Fernet(NEW_KEY.encode()), Fernet(OLD_KEY.encode())
    for credential in ExchangeCredential.objects.order_by("pk"):
        for field in ENCRYPTED_FIELDS:
            token = getattr(credential, field)
            if not before[credential.pk][field]:
                assert token == ""  # no passphrase stays no passphrase
                continue
            assert token != before[credential.pk][field]
            new.decrypt(token.encode())  # encrypted under the new key ...
            with pytest.raises(InvalidToken):
                old.decrypt(token.encode())  # ... and no longer under the old one
    # Still decrypts, also with the old key removed.
    settings.FERNET_KEYS = [NEW_KEY]
    assert [c.secrets() for c in ExchangeCredential.objects.order_by("pk")] == SECRETS
    # Nothing secret in the command's output or the logs.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for plaintext in _plaintexts():
        assert plaintext not in output and plaintext not in logged


@pytest.mark.django_db
def test_rotation_is_idempotent(settings, stored_under_old_key):
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    _rotate()
    output = _rotate()  # e.g. re-run after an interruption
    assert "Re-encrypted 3 credential(s)" in output
    settings.FERNET_KEYS = [NEW_KEY]
    assert [c.secrets() for c in ExchangeCredential.objects.order_by("pk")] == SECRETS


@pytest.mark.django_db
def test_no_keys_is_a_clear_error_and_touches_nothing(settings, stored_under_old_key):
    before = list(ExchangeCredential.objects.order_by("pk").values_list(*ENCRYPTED_FIELDS))
    settings.FERNET_KEYS = []
    with pytest.raises(CommandError, match="FERNET_KEYS is empty") as excinfo:
        _rotate()
    assert "Fernet.generate_key()" in str(excinfo.value)  # says how to make a key
    assert list(ExchangeCredential.objects.order_by("pk").values_list(*ENCRYPTED_FIELDS)) == before


@pytest.mark.django_db
def test_malformed_key_is_a_clear_error(settings, stored_under_old_key):
    settings.FERNET_KEYS = ["not-a-fernet-key", OLD_KEY]
    with pytest.raises(CommandError, match="malformed key"):
        _rotate()


@pytest.mark.django_db
def test_old_key_missing_names_the_credential_without_secrets(settings, stored_under_old_key):
    settings.FERNET_KEYS = [NEW_KEY]  # the old key was dropped before rotating
    with pytest.raises(CommandError) as excinfo:
        _rotate()
    message = str(excinfo.value)
    first = min(c.pk for c in stored_under_old_key)
    assert f"credential {first} cannot be decrypted" in message and "FERNET_KEYS" in message
    assert isinstance(excinfo.value.__cause__, SecretDecryptionError)
    for plaintext in _plaintexts():
        assert plaintext not in message
    # Recoverable: with the old key back after the new one, the same command finishes the job.
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]
    assert "Re-encrypted 3 credential(s)" in _rotate()


@pytest.mark.django_db
def test_a_single_key_warns_that_nothing_is_rotated_from(settings, stored_under_old_key):
    output = _rotate()
    assert "single key" in output and "Re-encrypted 3 credential(s)" in output
    assert [c.secrets() for c in ExchangeCredential.objects.order_by("pk")] == SECRETS


@pytest.mark.django_db
def test_rotation_also_re_encrypts_pending_webhook_updates(settings, stored_under_old_key):
    import json

    from accounts.crypto import encrypt_secret
    from telegram_bridge.models import TelegramUpdate

    update = {"update_id": 77, "message": {"text": "AK-in-a-connect-reply"}}
    pending = TelegramUpdate.objects.create(update_id=77, payload=encrypt_secret(json.dumps(update)))
    done = TelegramUpdate.objects.create(update_id=78, payload="")  # processed: its payload was emptied
    settings.FERNET_KEYS = [NEW_KEY, OLD_KEY]

    assert "and 1 pending Telegram update(s)" in _rotate()
    pending.refresh_from_db()
    assert json.loads(Fernet(NEW_KEY.encode()).decrypt(pending.payload.encode())) == update
    with pytest.raises(InvalidToken):
        Fernet(OLD_KEY.encode()).decrypt(pending.payload.encode())
    done.refresh_from_db()
    assert done.payload == ""
