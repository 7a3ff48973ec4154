# Sample VM Maker device application: copy it to a board as main.py next to the `vmmaker`
# package and a `vmmaker.json` device config.
#
# It joins WiFi (when the config has "wifi": {"ssid": ..., "password": ...}), reads a command
# with `GET /v1/<command>` and posts one telemetry reading with `POST /v1/<telemetry>`.
# Failover (backup server, alternate region, redirects, Retry-After) happens inside the SDK.
#
# Output: human-readable lines, plus one machine-readable line per call and a final one:
#   TRACE <what the SDK tried>                      (one per attempt, wait or redirect)
#   RESULT {"call": "GET /v1/command", "status": 200, "server": "tr/api/backup", ...}
#   RESULT {"call": "...", "error": "AuthError", "message": "..."}  (a vmmaker error)
#   DONE {"ok": true, "calls": 2}
# Exit status 0 when every call got a non-error answer, 1 otherwise.
#
# Arguments (host runs only; a board has none): [command-name [telemetry-name]].
import sys
import time
import json

import vmmaker

CONFIG = "vmmaker.json"
COMMAND = "command"
TELEMETRY = "telemetry"
WIFI_WAIT_S = 15


def join_wifi(wifi):
    """Connect the station interface; returns the IP address. `wifi`: {"ssid", "password"}."""
    import network
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        print("wifi: connecting to %s" % wifi.get("ssid"))
        wlan.connect(wifi.get("ssid"), wifi.get("password"))
        start = time.time()
        while not wlan.isconnected():
            if time.time() - start > WIFI_WAIT_S:
                raise OSError("WiFi %r: not connected after %d s" % (wifi.get("ssid"), WIFI_WAIT_S))
            time.sleep(0.1)
    ip = wlan.ifconfig()[0]
    print("wifi: connected, ip %s" % ip)
    return ip


def sync_clock():
    """A board boots at 2000-01-01: TLS certificate dates only check out after an NTP sync."""
    if sys.platform in ("linux", "darwin", "win32"):
        return  # a host (the simulator) already knows the time
    try:
        import ntptime
        ntptime.settime()
        print("clock: synchronised")
    except Exception as e:  # the first call then fails with a TLS error naming the date
        print("clock: NTP sync failed (%s): TLS certificate checks may fail" % e)


def device_id():
    try:
        import machine
        import binascii
        return binascii.hexlify(machine.unique_id()).decode()
    except (ImportError, AttributeError):
        return "sim-device"


def read_sensor():
    # A real board would read a sensor here (machine.ADC, a DHT22, esp32.mcu_temperature()...).
    try:
        import esp32
        return {"temp_c": esp32.mcu_temperature()}
    except (ImportError, AttributeError):
        return {"temp_c": 21.5}


def trace(line):
    print("TRACE " + line)


def describe(call, resp):
    """The machine-readable facts of one answer."""
    info = {
        "call": call,
        "status": resp.status_code,
        "role": resp.role,
        "region": resp.region,
        "server": resp.server,
        "attempts": resp.attempts,
        "history": [list(h) for h in resp.history],
        "temporary": resp.temporary,
        "replayed": resp.headers.get("x-vmm-replayed") == "1",
        "reason": resp.reason,
    }
    try:
        body = resp.json()
        info["data"] = body.get("data") if resp.status_code < 400 else None
    except (ValueError, AttributeError):
        info["data"] = None
    return info


def do_call(client, method, name, body=None):
    call = "%s /v1/%s" % (method, name)
    print("CALL " + call)
    try:
        if method == "GET":
            resp = client.get("/v1/" + name)
        else:
            resp = client.request(method, "/v1/" + name, json=body)
    except vmmaker.VMMakerError as e:
        # Every SDK failure is a VMMakerError subclass with a message a person can act on.
        # .history: the attempts of the call; an AuthError carries the server's answer too.
        resp = getattr(e, "response", None)
        history = getattr(e, "history", None) or getattr(resp, "history", None) or []
        print("%s failed: %s: %s" % (call, type(e).__name__, e))
        info = {"call": call, "error": type(e).__name__, "message": str(e),
                "history": [list(h) for h in history]}
        if resp is not None:
            info["status"] = resp.status_code
            info["server"] = resp.server
        print("RESULT " + json.dumps(info))
        return False
    info = describe(call, resp)
    resp.close()
    note = ""
    if info["temporary"]:
        note = " [temporary answer: cached auth, data may be stale]"
    if info["replayed"]:
        note += " [replayed: the write was already applied]"
    print("%s -> %d from %s (%s, region %s) after %d attempt(s)%s" % (
        call, info["status"], info["server"], info["role"], info["region"], info["attempts"], note))
    if info["status"] < 400:
        print("  data: %s" % json.dumps(info["data"]))
    print("RESULT " + json.dumps(info))
    return info["status"] < 400


def main(argv):
    command = argv[1] if len(argv) > 1 else COMMAND
    telemetry = argv[2] if len(argv) > 2 else TELEMETRY
    try:
        config = vmmaker.load_config(CONFIG)
        if config.get("wifi"):
            join_wifi(config["wifi"])
            sync_clock()
        client = vmmaker.Client(config, trace=trace)
    except vmmaker.VMMakerError as e:
        print("setup failed: %s: %s" % (type(e).__name__, e))
        print("RESULT " + json.dumps({"call": "setup", "error": type(e).__name__, "message": str(e),
                                      "history": []}))
        print("DONE " + json.dumps({"ok": False, "calls": 0}))
        return 1
    except OSError as e:
        print("setup failed: WiFi: %s" % (e,))
        print("RESULT " + json.dumps({"call": "wifi", "error": "OSError", "message": str(e),
                                      "history": []}))
        print("DONE " + json.dumps({"ok": False, "calls": 0}))
        return 1
    print("device %s: %s/%s" % (device_id(), client.region, client.service))
    ok = do_call(client, "GET", command)
    reading = read_sensor()
    reading["device"] = device_id()
    ok = do_call(client, "POST", telemetry, reading) and ok
    print("DONE " + json.dumps({"ok": ok, "calls": 2}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
