# Simulated ESP32 `network` module. Link state is read from the file named by the
# VMMAKER_LINK environment variable ("up"/"down"), so a test can cut the WiFi mid-run.
import os

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 1010


def _link_up():
    path = os.getenv("VMMAKER_LINK") if hasattr(os, "getenv") else None
    if not path:
        return True
    try:
        with open(path) as f:
            return f.read().strip() != "down"
    except OSError:
        return True


class WLAN:
    def __init__(self, interface=STA_IF):
        self._if = interface
        self._active = False
        self._ssid = None

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("WiFi Internal Error")  # as an ESP32 answers before active(True)
        self._ssid = ssid

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None and _link_up()

    def status(self, param=None):
        if param == "rssi":
            return -55
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        if args == ("mac",):
            return b"\x24\x0a\xc4\x00\x00\x01"
        if args == ("essid",):
            return self._ssid
        return None
