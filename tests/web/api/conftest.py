"""Fixtures for the API tests: see tests/support/apiclient.py."""

from tests.support.apiclient import api, make_api

__all__ = ["api", "make_api"]
