"""The daemon (``posagent run``): ``loop`` (the main loop), ``services`` (the collaborators of
one config, built in one place), ``reporter`` (commits and their sinks), ``reload`` (SIGHUP),
``jobs`` (status rounds and self-tests in their own thread), ``sdnotify``. It uses the services
of ``posagent.fleet`` and below, never the CLI."""
