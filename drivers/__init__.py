"""Drivers: the interface, transports, one module per device family, and simulators."""
