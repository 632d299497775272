"""posagent: health agent for Linux point-of-sale terminals.

The package is kept import-light: importing ``posagent`` pulls nothing heavy so that
``posagent --version`` starts at interpreter speed.
"""

from posagent.core.version import __version__

__all__ = ["__version__"]
