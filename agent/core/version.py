"""The agent's version, kept in one import-free module so `--version` costs nothing."""

__version__ = "0.1.0"
#: The year this version was built; a clock reading earlier than this means the RTC is wrong.
BUILD_YEAR = 2026
