"""Notifiers: ``core.ports.Notifier`` implementations (the log, SendGrid); ``wiring`` picks one."""
