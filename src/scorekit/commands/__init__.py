"""One module per `scorekit` subcommand (see scorekit.cli)."""
