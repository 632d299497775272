"""Contract of a keypad (evdev). The simulator serves real ``input_event`` records; a real
keypad needs /dev/input (``--device-url evdev-keypad=evdev:///dev/input/by-id/...``)."""

from __future__ import annotations

from tests.contract.contract import DeviceContract


class TestKeypadContract(DeviceContract):
    driver = "evdev-keypad"
    sim_url = "sim://keypad"
