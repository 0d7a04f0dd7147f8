"""The managers' console (function ``backup_console``): routes and API (``api``), log query parsing
and CSV (``logs``), the three settings (``settings``), the OpenAPI document and the static page."""
