"""One module per `jointperception` subcommand: add_arguments(parser) and run(args) -> exit code."""
