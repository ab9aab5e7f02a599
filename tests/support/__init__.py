"""Test support (no tests here): fixtures, the federation the tests build, helpers.

``fixtures`` is loaded for every test module by ``pytest_plugins`` in tests/conftest.py;
the other modules are imported by the tests that need them. docs/testing.md says how
they fit together.
"""
