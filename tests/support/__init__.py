"""Helpers shared by the tests: servers, clients, browsers, broken URLconfs."""
