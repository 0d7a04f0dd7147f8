"""The pure core: backup and cleanup orchestration, retention rules, naming, health, alert policy
and messages, on the protocols of ``core.ports``. Imports no driver, SDK or framework (``make lint``)."""
