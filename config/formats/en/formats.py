"""Date and time as operators read them in the admin and the control panel: 2024-01-31 14:05 (times are UTC),
instead of the locale's "Jan. 31, 2024, 2:05 p.m." (wider, and ambiguous to read at a glance)."""

DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
