from django.urls import path

from telegram_bridge import views

app_name = "telegram_bridge"
urlpatterns = [path("webhook", views.telegram_webhook, name="webhook")]
