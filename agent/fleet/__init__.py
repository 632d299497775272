"""The fleet services the daemon and the CLI share: messages, the outbox (``outbox``,
``outbox_db``), the upstream and the delivery, schedule arithmetic, the self-test history
(``history``, ``history_db``), the Prometheus export, the visit report outputs, and
``service`` (a status round, opening the outbox and the upstream of a config). Imports
neither the daemon nor the CLI."""
