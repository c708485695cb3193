from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from accounts.crypto import SecretDecryptionError, fernet
from accounts.services import exchange_credentials_rotate_keys
from telegram_bridge.services import telegram_updates_rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt all stored exchange credentials and pending Telegram webhook updates with the newest key in FERNET_KEYS: put the new key first, keep "
        "the old ones after it, run this, then remove the old keys."
    )

    def handle(self, *args, **options):
        try:
            fernet()  # an empty or malformed FERNET_KEYS is reported before any row is touched
        except ImproperlyConfigured as exc:
            raise CommandError(
                f"{exc} Set FERNET_KEYS to the new key followed by the old one(s), comma-separated; generate a key "
                'with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            ) from exc
        if len(settings.FERNET_KEYS) == 1:
            self.stderr.write(
                self.style.WARNING("FERNET_KEYS holds a single key: rows are re-encrypted with that same key.")
            )
        try:
            count = exchange_credentials_rotate_keys()
        except SecretDecryptionError as exc:
            raise CommandError(
                f"{exc}. Add the key it was encrypted with after the new one in FERNET_KEYS and run again "
                "(credentials already rotated stay readable)."
            ) from exc
        updates = telegram_updates_rotate_keys()  # webhook updates stored but not processed yet (seconds-lived)
        self.stdout.write(
            self.style.SUCCESS(
                f"Re-encrypted {count} credential(s) and {updates} pending Telegram update(s) with the newest key."
            )
        )
