"""Business rules shared by the pages, the API, the CLI and the periodic tasks."""
