"""HTTP: the dashboard pages, the JSON API and the guests' phone-home callbacks."""
