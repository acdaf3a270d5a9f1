"""Helpers the tests share (imported as ``tests.helpers.<module>``; fixtures live in
``tests/conftest.py``)."""
