from django.core.management.base import BaseCommand

from accounts.services import exchange_credentials_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt all stored exchange credentials with the newest key in FERNET_KEYS (put the new key first)."

    def handle(self, *args, **options):
        count = exchange_credentials_rotate_keys()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} credential(s) with the newest key."))
