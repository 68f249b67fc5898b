"""One module per subcommand: `add_arguments(parser)` (no heavy imports) and `main(args)`."""
