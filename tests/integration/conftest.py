"""Fixtures of the integration tier besides tests/conftest.py's."""

from tests.integration.multi import multi_eks  # noqa: F401 (offered to the tier's modules)
