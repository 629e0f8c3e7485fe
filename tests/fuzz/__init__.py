"""The importer fuzz suite (a package, so its conftest is `fuzz.conftest`, not a second top-level `conftest`
that would shadow tests/conftest.py for `from conftest import ...`)."""
