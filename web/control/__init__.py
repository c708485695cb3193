"""The operators' control panel inside the Django admin (/admin/control/): analytics, system health and actions."""
