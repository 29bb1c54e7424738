"""Fixtures for the API tests: see tests/support/apiclient.py."""

from tests.support.apiclient import api, api_database_url, make_api

__all__ = ["api", "api_database_url", "make_api"]
