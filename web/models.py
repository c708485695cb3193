"""Models of the web interface: one-time login links."""

from __future__ import annotations

from django.db import models


class LoginToken(models.Model):
    """A one-time web dashboard login link. Only the SHA-256 of the token is stored; single use, short-lived."""

    user = models.ForeignKey("accounts.TelegramUser", on_delete=models.CASCADE, related_name="login_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="logintoken_expires_idx")]
        db_table = "analytics_logintoken"

    def __str__(self) -> str:
        return f"login link of {self.user} (until {self.expires_at:%Y-%m-%d %H:%M})"
