"""Countersign kernel: settings, database, migrations, telemetry set-up and the CLI."""
