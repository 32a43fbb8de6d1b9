"""Sans-IO exchange adapters: request specs and parsers, one module per exchange."""
