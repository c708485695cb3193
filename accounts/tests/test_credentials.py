import pytest
from cryptography.fernet import Fernet
from django.db import IntegrityError, connection, transaction

from accounts.crypto import SecretDecryptionError, decrypt_secret, encrypt_secret
from accounts.models import ApiSecrets, ExchangeCredential
from accounts.services import exchange_credential_create, exchange_credentials_rotate_keys
from accounts.tests.factories import ExchangeCredentialFactory, TelegramUserFactory

SECRETS = ApiSecrets(api_key="AK-live-9f8e7d6c5b4a", secret="SK-very-secret-value", passphrase="my passphrase")


def test_encrypt_round_trip():
    token = encrypt_secret("hello world")
    assert token != "hello world"
    assert decrypt_secret(token) == "hello world"


@pytest.mark.django_db
def test_database_never_contains_plaintext_secrets():
    user = TelegramUserFactory()
    credential = exchange_credential_create(user=user, exchange="okx", secrets=SECRETS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key_encrypted, api_secret_encrypted, passphrase_encrypted, last4 FROM accounts_exchangecredential WHERE id = %s",
            [credential.pk],
        )
        row = cursor.fetchone()
    stored = " ".join(row)
    for plaintext in (SECRETS.api_key, SECRETS.secret, SECRETS.passphrase):
        assert plaintext not in stored
    assert row[3] == "5b4a"
    assert ExchangeCredential.objects.get(pk=credential.pk).secrets() == SECRETS


def test_secrets_repr_hides_everything_but_last4():
    text = repr(SECRETS) + str(SECRETS)
    assert SECRETS.secret not in text and SECRETS.passphrase not in text and SECRETS.api_key not in text
    assert "5b4a" in text


@pytest.mark.django_db
def test_one_active_credential_per_user_is_a_database_constraint():
    credential = ExchangeCredentialFactory()
    duplicate = ExchangeCredential(user=credential.user, exchange="mexc")
    duplicate.set_secrets(SECRETS)
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


@pytest.mark.django_db
def test_connecting_a_new_exchange_deactivates_the_old_one():
    user = TelegramUserFactory()
    first = exchange_credential_create(user=user, exchange="okx", secrets=SECRETS)
    second = exchange_credential_create(user=user, exchange="mexc", secrets=SECRETS)
    first.refresh_from_db()
    assert not first.is_active and second.is_active
    assert ExchangeCredential.objects.filter(user=user, is_active=True).count() == 1


@pytest.mark.django_db
def test_key_rotation_re_encrypts_with_the_newest_key(settings):
    credential = exchange_credential_create(user=TelegramUserFactory(), exchange="okx", secrets=SECRETS)
    old_keys = list(settings.FERNET_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, *old_keys]
    assert exchange_credentials_rotate_keys() == 1
    settings.FERNET_KEYS = [new_key]  # the old key is gone: rows must still decrypt
    credential.refresh_from_db()
    assert credential.secrets() == SECRETS
    settings.FERNET_KEYS = old_keys
    with pytest.raises(SecretDecryptionError):
        credential.secrets()
