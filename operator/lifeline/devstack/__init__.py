"""The embedded default: an API emulator and friends, for `make demo` and the tests."""
