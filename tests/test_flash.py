"""vmmaker-flash (tools/flash.py), without hardware.

Two halves:
1. esptool's API replaced at its boundary: the esptool.cmds functions the tool calls
   (detect_chip, run_stub, attach_flash, detect_flash_size, write_flash, verify_flash,
   reset_chip) are monkeypatched with fakes that record calls against a fake ESP object.
2. Real esptool on firmware files built here: a minimal ESP32-family image (header, extended
   header with chip id, RAM segments, checksum, SHA-256) from our own builder, checked by
   `esptool image-info` and by vmmaker-flash --dry-run; damaged variants get the wrong-file
   error.
"""

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import esptool
import esptool.cmds
import pytest
import serial
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from tools import flash

# Offsets from MicroPython's published instructions (board.json "flash_offset" / deploy_s2.md),
# written out again here on purpose: the test must fail if someone edits the table in flash.py.
EXPECTED_OFFSETS = {
    "esp32": 0x1000, "esp32s2": 0x1000,
    "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0, "esp32h2": 0x0,
    "esp32c2": 0x0, "esp32c5": 0x2000, "esp32p4": 0x2000,
}
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32s3": 9, "esp32c3": 5, "esp32c6": 13, "esp32h2": 16,
            "esp32c2": 12, "esp32c5": 23, "esp32p4": 18}
CHIP_NAMES = {"esp32": "ESP32", "esp32s2": "ESP32-S2", "esp32s3": "ESP32-S3",
              "esp32c3": "ESP32-C3", "esp32c6": "ESP32-C6", "esp32h2": "ESP32-H2",
              "esp32c2": "ESP32-C2", "esp32c5": "ESP32-C5", "esp32p4": "ESP32-P4"}


# --------------------------------------------------------------------------- image builder
# Format (from reading esptool/bin_image.py): 8-byte common header <BBBBI (magic 0xE9,
# segment count, flash mode, flash size<<4|freq, entry point); for ESP32-family chips a 16-byte
# extended header <BBBBHBHH4xB (WP pin, 3 bytes of SPI drive strengths, chip id, min_rev,
# min_rev_full, max_rev_full, 4 reserved, append_digest flag); then per segment <II (load
# address, length) + data; zero padding so that the checksum byte is the last byte of a
# 16-byte block; checksum = 0xEF XOR every byte of segment data; optionally the SHA-256 of
# everything before it.

DIO = 2  # flash mode
SIZE_4MB_FREQ_40M = 0x20  # ESP32: FLASH_SIZES["4MB"] = 0x20, FLASH_FREQUENCY["40m"] = 0x0
WP_PIN_DISABLED = 0xEE


def ram_segments(chip="esp32"):
    """Two small segments at the start of the chip's DRAM and IRAM (as a bootloader has)."""
    mm = {name: start for start, _end, name in reversed(CHIP_DEFS[chip].MEMORY_MAP)}
    dram = bytes(range(48))  # 48 bytes
    iram = struct.pack("<8I", *range(0x1000, 0x1008))  # 32 bytes
    return [(mm["DRAM"] + 0x30, dram), (mm["IRAM"] + 0x400, iram)]


def build_image(chip_id=0, segments=None, entry=0x40080400, append_digest=True,
                flash_mode=DIO, size_freq=SIZE_4MB_FREQ_40M, min_rev_full=0,
                max_rev_full=399):
    segments = ram_segments() if segments is None else segments
    out = bytearray(struct.pack("<BBBBI", 0xE9, len(segments), flash_mode, size_freq, entry))
    out += struct.pack("<BBBBHBHH4xB", WP_PIN_DISABLED, 0, 0, 0, chip_id, 0, min_rev_full,
                       max_rev_full, 1 if append_digest else 0)
    checksum = 0xEF
    for addr, data in segments:
        assert len(data) % 4 == 0
        out += struct.pack("<II", addr, len(data)) + data
        for b in data:
            checksum ^= b
    out += b"\x00" * (15 - len(out) % 16)
    out.append(checksum)
    assert len(out) % 16 == 0
    if append_digest:
        out += hashlib.sha256(bytes(out)).digest()
    return bytes(out)


def app_segments(chip="esp32"):
    """An application's segments: one mapped from flash (DROM, starting with a 256-byte
    esp_app_desc_t: magic 0xABCD5432, version and project name) and one in RAM."""
    mm = {name: start for start, _end, name in reversed(CHIP_DEFS[chip].MEMORY_MAP)}
    desc = struct.pack("<II8x32s32s", 0xABCD5432, 0, b"v1.25.0", b"micropython")
    desc += bytes(256 - len(desc))
    return [(mm["DROM"] + 0x20, desc),
            (mm["IRAM"] + 0x400, struct.pack("<4I", 1, 2, 3, 4))]


def partition_table():
    """MicroPython's layout: nvs, phy_init, factory app at 0x10000, vfs (32-byte entries:
    magic 0xAA 0x50, type, subtype, offset, size, label, flags), then the MD5 entry."""
    rows = [(1, 2, 0x9000, 0x6000, b"nvs"), (1, 1, 0xF000, 0x1000, b"phy_init"),
            (0, 0, 0x10000, 0x1F0000, b"factory"), (1, 0x81, 0x200000, 0x200000, b"vfs")]
    out = b"".join(b"\xaa\x50" + struct.pack("<BBII16sI", t, st, off, size, label, 0)
                   for t, st, off, size, label in rows)
    out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(out).digest()
    return out


def build_merged(chip="esp32", boot=None, app=None, chip_id=None):
    """A complete MicroPython-style .bin as published: bootloader at the chip's bootloader
    offset, partition table at flash 0x8000, application image at flash 0x10000, in one file
    that is written at the bootloader offset."""
    chip_id = CHIP_IDS[chip] if chip_id is None else chip_id
    base = EXPECTED_OFFSETS[chip]
    if boot is None:
        boot = build_image(chip_id=chip_id, segments=ram_segments(chip))
    if app is None:
        app = build_image(chip_id=chip_id, segments=app_segments(chip))
    out = bytearray(b"\xff" * (0x10000 - base))
    out[:len(boot)] = boot
    pt = partition_table()
    out[0x8000 - base:0x8000 - base + len(pt)] = pt
    return bytes(out) + app


def image_checksum(segments):
    c = 0xEF
    for _addr, data in segments:
        for b in data:
            c ^= b
    return c


def build_esp8266_image():
    """ESP8266 'version 1' image: common header and segments, no extended header."""
    segs = [(0x40100000, b"\x01\x02\x03\x04" * 4), (0x3FFE8000, b"\xaa\x55\xaa\x55")]
    out = bytearray(struct.pack("<BBBBI", 0xE9, len(segs), 0, 0x20, 0x40100004))
    for addr, data in segs:
        out += struct.pack("<II", addr, len(data)) + data
    out += b"\x00" * (15 - len(out) % 16)
    out.append(image_checksum(segs))
    return bytes(out)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.fixture
def esp32_bin(tmp_path):
    return write(tmp_path, "ESP32_GENERIC-test.bin", build_merged("esp32"))


@pytest.fixture
def s3_bin(tmp_path):
    boot = build_image(chip_id=9, segments=ram_segments("esp32s3"), entry=0x40375000)
    return write(tmp_path, "ESP32_GENERIC_S3-test.bin", build_merged("esp32s3", boot=boot))


def esptool_cli():
    exe = Path(sys.executable).parent / "esptool"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "esptool"]


# --------------------------------------------------------------------------- fakes


class FakePort:
    def __init__(self, name):
        self.name = name
        self.closed = False


class FakeESP:
    """Stands in for a connected esptool ESPLoader (ROM or stub): the attributes flash.py reads
    and the context manager that closes the port."""

    def __init__(self, chip_name, port, calls, is_stub=False):
        self.CHIP_NAME = chip_name
        self.IS_STUB = is_stub
        self.secure_download_mode = False
        self.port = port
        self.calls = calls

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.port.closed = True
        self.calls.append(("close",))

    def change_baud(self, baud):
        self.calls.append(("change_baud", baud))


class FakeEsptool:
    """Records the esptool.cmds calls; `fail` maps a function name to an exception to raise."""

    def __init__(self, monkeypatch, chip_name="ESP32", flash_size="4MB"):
        self.calls = []
        self.chip_name = chip_name
        self.flash_size = flash_size
        self.fail = {}
        self.port = None
        self.rom = None
        self.stub = None
        for name in ("detect_chip", "run_stub", "attach_flash", "detect_flash_size",
                     "write_flash", "verify_flash", "reset_chip", "erase_flash"):
            monkeypatch.setattr(esptool.cmds, name, getattr(self, name))

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail[name]

    def detect_chip(self, port, baud=115200, *a, **kw):
        self.calls.append(("detect_chip", port, baud))
        self._maybe_fail("detect_chip")
        self.port = FakePort(port)
        self.rom = FakeESP(self.chip_name, self.port, self.calls)
        return self.rom

    def run_stub(self, esp, *a, **kw):
        assert esp is self.rom
        self.calls.append(("run_stub",))
        self._maybe_fail("run_stub")
        self.stub = FakeESP(self.chip_name, self.port, self.calls, is_stub=True)
        return self.stub

    def attach_flash(self, esp, *a, **kw):
        assert esp is self.stub, "attach_flash must use the stub run_stub returned"
        self.calls.append(("attach_flash",))
        self._maybe_fail("attach_flash")

    def detect_flash_size(self, esp):
        self.calls.append(("detect_flash_size",))
        return self.flash_size

    def write_flash(self, esp, addr_data, **kw):
        assert esp is self.stub
        assert not self.port.closed
        self.calls.append(("write_flash", [(a, len(d)) for a, d in addr_data], kw))
        self.written = addr_data
        self._maybe_fail("write_flash")

    def verify_flash(self, esp, addr_data, **kw):
        assert esp is self.stub
        self.calls.append(("verify_flash", [(a, len(d)) for a, d in addr_data]))
        self._maybe_fail("verify_flash")

    def reset_chip(self, esp, mode="hard-reset"):
        assert not self.port.closed, "reset must happen before the port is closed"
        self.calls.append(("reset_chip", mode))
        self._maybe_fail("reset_chip")

    def erase_flash(self, esp, *a, **kw):
        self.calls.append(("erase_flash",))

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def fake(monkeypatch):
    return FakeEsptool(monkeypatch)


def run_cli(capsys, *argv):
    rc = flash.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- offsets


def test_offsets_table_is_the_published_one():
    assert flash.FLASH_OFFSETS == EXPECTED_OFFSETS


@pytest.mark.parametrize("chip", sorted(EXPECTED_OFFSETS))
def test_offsets_agree_with_esptools_chip_definitions(chip):
    cls = CHIP_DEFS[chip]
    assert cls.BOOTLOADER_FLASH_OFFSET == flash.FLASH_OFFSETS[chip]
    assert cls.IMAGE_CHIP_ID == CHIP_IDS[chip]
    assert cls.CHIP_NAME == CHIP_NAMES[chip]


# --------------------------------------------------------------------------- flashing (fakes)


@pytest.mark.parametrize("chip", sorted(EXPECTED_OFFSETS))
def test_flash_sequence_and_offset_per_chip(chip, monkeypatch, tmp_path, capsys):
    fake = FakeEsptool(monkeypatch, chip_name=CHIP_NAMES[chip])
    data = build_merged(chip)
    path = write(tmp_path, "fw.bin", data)
    rc, out, err = run_cli(capsys, "--port", "/dev/ttyUSB0", path)
    assert rc == 0, err
    assert fake.calls == [
        ("detect_chip", "/dev/ttyUSB0", 115200),
        ("run_stub",),
        ("change_baud", 460800),
        ("attach_flash",),
        ("detect_flash_size",),
        ("write_flash", [(EXPECTED_OFFSETS[chip], len(data))], {"erase_all": True}),
        ("verify_flash", [(EXPECTED_OFFSETS[chip], len(data))]),
        ("reset_chip", "hard-reset"),
        ("close",),
    ]
    assert fake.written[0][1] == data  # exactly the checked bytes are written
    assert fake.port.closed
    assert "done" in out and "0x%x" % EXPECTED_OFFSETS[chip] in out


def test_erase_happens_before_write_by_default(fake, esp32_bin, capsys):
    # write_flash(erase_all=True): esptool runs its safety checks, erases the whole chip, then
    # writes (esptool.cmds.write_flash: "if erase_all: erase_flash(esp, force)" before the
    # write loop). A separate erase_flash call is not made.
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 0, err
    (write_call,) = [c for c in fake.calls if c[0] == "write_flash"]
    assert write_call[2]["erase_all"] is True
    assert "erase_flash" not in fake.names()


def test_no_erase_writes_without_full_erase(fake, esp32_bin, capsys):
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", "--no-erase", esp32_bin)
    assert rc == 0, err
    (write_call,) = [c for c in fake.calls if c[0] == "write_flash"]
    assert write_call[2]["erase_all"] is False
    assert "erase_flash" not in fake.names()
    assert fake.names()[-3:] == ["verify_flash", "reset_chip", "close"]


def test_verify_requested_and_reset_last(fake, esp32_bin, capsys):
    rc, _, _ = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 0
    names = fake.names()
    assert names.index("write_flash") < names.index("verify_flash") < names.index("reset_chip")
    assert names[-2:] == ["reset_chip", "close"]


def test_baud_115200_does_not_switch(fake, esp32_bin, capsys):
    rc, _, _ = run_cli(capsys, "--port", "/dev/ttyUSB0", "--baud", "115200", esp32_bin)
    assert rc == 0
    assert "change_baud" not in fake.names()


def test_custom_baud_is_used(fake, esp32_bin, capsys):
    rc, _, _ = run_cli(capsys, "--port", "/dev/ttyUSB0", "--baud", "921600", esp32_bin)
    assert rc == 0
    assert ("change_baud", 921600) in fake.calls


def test_chip_option_matching_board_is_accepted(fake, esp32_bin, capsys):
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", "--chip", "ESP32", esp32_bin)
    assert rc == 0, err


# --- error cases: each gives exit code 2 (nothing written), a specific message, port closed


def assert_nothing_written(fake):
    assert "write_flash" not in fake.names()
    assert "erase_flash" not in fake.names()


def test_missing_port_serial_exception(fake, esp32_bin, capsys):
    fake.fail["detect_chip"] = serial.SerialException(
        "[Errno 2] could not open port /dev/ttyUSB9: [Errno 2] No such file or directory: "
        "'/dev/ttyUSB9'")
    rc, out, err = run_cli(capsys, "--port", "/dev/ttyUSB9", esp32_bin)
    assert rc == 2
    assert "cannot open serial port /dev/ttyUSB9" in err
    assert "No such file or directory" in err
    assert "--port" in err and "serial.tools.list_ports" in err
    assert_nothing_written(fake)


def test_missing_port_as_esptool_reports_it(fake, esp32_bin, capsys):
    # esptool's ESPLoader wraps the pyserial error in a FatalError.
    fake.fail["detect_chip"] = FatalError(
        "Could not open /dev/ttyUSB9, the port is busy or doesn't exist.\n"
        "([Errno 2] could not open port /dev/ttyUSB9: [Errno 2] No such file or directory)\n"
        "\nHint: Check if the port is correct and ESP connected\n")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB9", esp32_bin)
    assert rc == 2
    assert "cannot open serial port /dev/ttyUSB9 ([Errno 2] could not open port" in err
    assert_nothing_written(fake)


def test_missing_port_with_real_esptool(esp32_bin, tmp_path, capsys):
    # No fake: esptool's real detect_chip tries to open a port that does not exist.
    port = str(tmp_path / "ttyUSB-nonexistent")
    rc, _, err = run_cli(capsys, "--port", port, esp32_bin)
    assert rc == 2
    assert "cannot open serial port %s" % port in err
    assert "Traceback" not in err


def test_port_required_for_a_real_run(fake, esp32_bin, capsys):
    rc, _, err = run_cli(capsys, esp32_bin)
    assert rc == 2
    assert "--port is required" in err
    assert fake.calls == []


@pytest.mark.parametrize("name", ["ESP8266", "ESP32-C61", "ESP32-H4"])
def test_unsupported_detected_chip(monkeypatch, esp32_bin, capsys, name):
    fake = FakeEsptool(monkeypatch, chip_name=name)
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 2
    assert "the board on /dev/ttyUSB0 is an %s" % name in err
    assert "ESP32, ESP32-S2, ESP32-S3, ESP32-C3, ESP32-C6, ESP32-H2" in err
    assert_nothing_written(fake)
    assert fake.port.closed
    assert fake.names()[-2:] == ["reset_chip", "close"]  # board left running


def test_unknown_chip(fake, esp32_bin, capsys):
    fake.fail["detect_chip"] = FatalError(
        "Unexpected chip ID value 99. Failed to autodetect chip type."
        "\nProbably it is unsupported by this version of esptool.")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 2
    assert "not one this esptool (%s) recognises" % esptool.__version__ in err
    assert "Unexpected chip ID value 99" in err
    assert "ESP32, ESP32-S2, ESP32-S3" in err


def test_no_bootloader_answer(fake, esp32_bin, capsys):
    fake.fail["detect_chip"] = FatalError(
        "Failed to connect to Espressif device: No serial data received.\n"
        "For troubleshooting steps visit: https://docs.espressif.com/...")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 2
    assert "no ESP bootloader answered on /dev/ttyUSB0" in err
    assert "hold BOOT" in err


def test_chip_firmware_mismatch_s3_image_on_esp32_board(fake, s3_bin, capsys):
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", s3_bin)
    assert rc == 2
    assert "is MicroPython firmware for ESP32-S3 (chip id 9 in its header)" in err
    assert "the board on /dev/ttyUSB0 is an ESP32" in err
    assert "ESP32_GENERIC" in err and "micropython.org/download" in err
    assert_nothing_written(fake)
    assert "run_stub" not in fake.names()
    assert fake.port.closed
    assert fake.names()[-2:] == ["reset_chip", "close"]


def test_chip_option_disagrees_with_board(monkeypatch, esp32_bin, capsys):
    fake = FakeEsptool(monkeypatch, chip_name="ESP32-S3")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", "--chip", "esp32", esp32_bin)
    assert rc == 2
    assert "is an ESP32-S3, but --chip esp32 was given" in err
    assert_nothing_written(fake)
    assert fake.port.closed


def test_secure_download_mode_is_refused(fake, esp32_bin, monkeypatch, capsys):
    real_detect = fake.detect_chip

    def detect(port, baud=115200, *a, **kw):
        esp = real_detect(port, baud)
        esp.secure_download_mode = True
        return esp
    monkeypatch.setattr(esptool.cmds, "detect_chip", detect)
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 2
    assert "Secure Download Mode" in err
    assert_nothing_written(fake)
    assert fake.port.closed


def test_firmware_larger_than_flash(monkeypatch, tmp_path, capsys):
    fake = FakeEsptool(monkeypatch, flash_size="2MB")
    data = build_merged("esp32")
    path = write(tmp_path, "big.bin", data + b"\xff" * (2 * 1024 * 1024 - len(data)))
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", path)
    assert rc == 2
    assert "does not fit in this board's 2MB flash" in err
    assert_nothing_written(fake)
    assert fake.port.closed


@pytest.mark.parametrize("argv_chip", ["esp8266", "esp32c61", "rp2040"])
def test_unsupported_chip_option(fake, esp32_bin, capsys, argv_chip):
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", "--chip", argv_chip, esp32_bin)
    assert rc == 2
    assert "--chip %s is not supported" % argv_chip in err
    assert "ESP32-S3" in err
    assert fake.calls == []


# --- failures once esptool works on the board: exit 1, port closed, board reset


@pytest.mark.parametrize("where, written", [
    ("run_stub", False), ("attach_flash", False), ("write_flash", True),
    ("verify_flash", True),
])
def test_esptool_failure_after_connecting(fake, esp32_bin, capsys, where, written):
    fake.fail[where] = FatalError("MD5 of file does not match data in flash!")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 1
    assert "flashing failed while" in err and "MD5 of file does not match" in err
    if written:
        assert "no working firmware now" in err
    else:
        assert "Nothing was written" in err
    assert fake.port.closed
    assert fake.names()[-2:] == ["reset_chip", "close"]


def test_serial_error_mid_write(fake, esp32_bin, capsys):
    fake.fail["write_flash"] = serial.SerialException("device reports readiness to read but "
                                                      "returned no data")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 1
    assert "no working firmware now" in err and "--baud 115200" in err
    assert fake.port.closed


def test_reset_failure_after_verified_write_is_a_warning(fake, esp32_bin, capsys):
    fake.fail["reset_chip"] = FatalError("reset failed")
    rc, out, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 0
    assert "press the board's RESET" in err
    assert fake.port.closed
    assert "verified; press RESET to boot it" in out


def test_interrupt_closes_port(fake, esp32_bin, capsys):
    fake.fail["write_flash"] = KeyboardInterrupt()
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 130
    assert fake.port.closed


def test_old_esptool_api_is_reported(fake, esp32_bin, capsys, monkeypatch):
    monkeypatch.delattr(esptool.cmds, "run_stub")
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", esp32_bin)
    assert rc == 2
    assert "needs esptool 5" in err and "run_stub" in err
    assert fake.calls == []


# --------------------------------------------------------------------------- dry run


def test_dry_run_does_not_touch_the_board(fake, esp32_bin, capsys):
    rc, out, err = run_cli(capsys, "--port", "/dev/ttyUSB0", "--dry-run", esp32_bin)
    assert rc == 0, err
    assert fake.calls == []
    assert "dry run" in out
    assert "chip:     ESP32 (from the firmware header" in out
    assert "offset:   0x1000" in out
    assert "size:     %d bytes" % os.path.getsize(esp32_bin) in out
    assert "erase the whole flash" in out
    assert "verify" in out and "hard reset" in out


def test_dry_run_no_erase_and_baud(fake, esp32_bin, capsys):
    rc, out, _ = run_cli(capsys, "--dry-run", "--no-erase", "--baud", "115200", esp32_bin)
    assert rc == 0
    assert "no full erase (--no-erase)" in out
    assert "baud:     115200" in out
    assert "--port is needed for a real run" in out


@pytest.mark.parametrize("chip", sorted(EXPECTED_OFFSETS))
def test_dry_run_offset_per_chip(chip, tmp_path, capsys):
    path = write(tmp_path, "fw.bin", build_merged(chip))
    rc, out, err = run_cli(capsys, "--dry-run", "--port", "/dev/ttyUSB0", path)
    assert rc == 0, err
    assert "chip:     %s " % CHIP_NAMES[chip] in out
    assert "offset:   0x%x\n" % EXPECTED_OFFSETS[chip] in out
    if chip in ("esp32h2", "esp32p4"):
        assert "no WiFi" in out


def test_dry_run_chip_option_mismatch(s3_bin, capsys):
    rc, _, err = run_cli(capsys, "--dry-run", "--chip", "esp32", s3_bin)
    assert rc == 2
    assert "firmware for ESP32-S3" in err and "--chip says the board is an ESP32" in err


def test_dry_run_via_console_script(esp32_bin):
    exe = Path(sys.executable).parent / "vmmaker-flash"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tools.flash"]
    p = subprocess.run(cmd + ["--dry-run", "--port", "/dev/ttyUSB0", esp32_bin],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "offset:   0x1000" in p.stdout


# --------------------------------------------------------------------------- esptool's own
# image inspection on the images built here


def image_info(path, chip=None):
    cmd = esptool_cli() + (["--chip", chip] if chip else []) + ["image-info", path]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_esptool_image_info_accepts_the_built_esp32_image(tmp_path):
    esp32_bin = write(tmp_path, "bootloader.bin", build_image(chip_id=0))
    rc, out = image_info(esp32_bin, chip="esp32")
    assert rc == 0, out
    segs = ram_segments()
    assert "Entry point: 0x40080400" in out
    assert "Segments: 2" in out
    assert "Flash size: 4MB" in out and "Flash freq: 40m" in out and "Flash mode: DIO" in out
    assert "Chip ID: 0 (ESP32)" in out
    for i, (addr, data) in enumerate(segs):
        # "{:7}  {:#07x}  {:#010x}" -> index, length, load address
        assert "%7d  %#07x  %#010x" % (i, len(data), addr) in out
    assert "DRAM" in out and "IRAM" in out
    assert "Checksum: %#04x (valid)" % image_checksum(segs) in out
    data = Path(esp32_bin).read_bytes()
    body = data[:-32]
    assert "Validation hash: %s (valid)" % hashlib.sha256(body).hexdigest() in out


def test_esptool_image_info_detects_s3_from_the_chip_id(s3_bin):
    rc, out = image_info(s3_bin)  # no --chip: esptool reads the chip id from the header
    assert rc == 0, out
    assert "Detected image type: ESP32-S3" in out
    assert "Chip ID: 9 (ESP32-S3)" in out
    assert "Entry point: 0x40375000" in out
    assert "(valid)" in out and "invalid" not in out


def test_esptool_image_info_without_digest(tmp_path):
    path = write(tmp_path, "nodigest.bin", build_image(append_digest=False))
    rc, out = image_info(path, chip="esp32")
    assert rc == 0, out
    assert "Checksum:" in out and "(valid)" in out
    assert "Validation hash" not in out
    merged = write(tmp_path, "merged-nodigest.bin", build_merged(
        "esp32", boot=build_image(append_digest=False),
        app=build_image(segments=app_segments(), append_digest=False)))
    assert flash.main(["--dry-run", merged]) == 0


def test_esptool_image_info_accepts_the_built_application(tmp_path):
    path = write(tmp_path, "app.bin", build_image(segments=app_segments()))
    rc, out = image_info(path, chip="esp32")
    assert rc == 0, out
    assert "Segments: 2" in out and "DROM" in out and "(valid)" in out and "invalid" not in out


def test_esptool_and_vmmaker_flash_agree_on_a_merged_style_file(tmp_path, capsys):
    # A real MicroPython .bin is the bootloader image followed by padding, the partition table
    # and the application; esptool's image-info parses the first image (the bootloader).
    data = build_merged("esp32")
    path = write(tmp_path, "merged.bin", data)
    rc, out = image_info(path, chip="esp32")
    assert rc == 0 and "Checksum:" in out and "(valid)" in out, out
    rc, out, err = run_cli(capsys, "--dry-run", path)
    assert rc == 0, err
    assert "size:     %d bytes" % len(data) in out and "offset:   0x1000" in out
    assert "application image at 0x10000, 2 segments" in out


# --- incomplete merged files: a cut-off download, a bootloader-only file, an empty image


def test_bootloader_only_file_is_refused(fake, tmp_path, capsys):
    err = wrong_file(capsys, write(tmp_path, "boot.bin", build_image(chip_id=0)), fake)
    assert "truncated download? the file ends before the application" in err
    assert "partition table" in err


@pytest.mark.parametrize("chip", sorted(EXPECTED_OFFSETS))
def test_file_cut_before_the_app_is_refused(fake, tmp_path, capsys, chip):
    data = build_merged(chip)
    base = EXPECTED_OFFSETS[chip]
    for cut, what in ((0x5000, "partition table"), (0x9000 - base, "application"),
                      (0x10000 - base, "application")):
        err = wrong_file(capsys, write(tmp_path, "cut.bin", data[:cut]), fake)
        assert "truncated download? the file ends before the application" in err, (cut, err)
        assert "ends before the %s" % what in err, (cut, err)


def test_file_cut_inside_the_app_is_refused(fake, tmp_path, capsys):
    data = build_merged("esp32")
    err = wrong_file(capsys, write(tmp_path, "cut.bin", data[:-40]), fake)
    assert "application image at flash 0x10000" in err and "truncated download?" in err


def test_padding_where_the_app_should_be_is_refused(fake, tmp_path, capsys):
    data = build_merged("esp32")
    err = wrong_file(capsys, write(tmp_path, "ff.bin", data[:0xF000] + b"\xff" * 4096), fake)
    assert "no application image at flash 0x10000" in err


def test_missing_partition_table_is_refused(fake, tmp_path, capsys):
    data = bytearray(build_merged("esp32"))
    data[0x7000:0x7002] = b"\xff\xff"
    err = wrong_file(capsys, write(tmp_path, "nopt.bin", bytes(data)), fake)
    assert "no partition table at flash 0x8000" in err


def test_corrupt_app_is_refused(fake, tmp_path, capsys):
    data = bytearray(build_merged("esp32", app=build_image(segments=app_segments(),
                                                            append_digest=False)))
    data[-1] ^= 0xFF
    err = wrong_file(capsys, write(tmp_path, "badapp.bin", bytes(data)), fake)
    assert "application image at flash 0x10000 is corrupted" in err


def test_zero_segment_images_are_refused(fake, tmp_path, capsys):
    err = wrong_file(capsys, write(tmp_path, "z.bin", build_merged(
        "esp32", boot=build_image(segments=[]))), fake)
    assert "has no segments" in err
    err = wrong_file(capsys, write(tmp_path, "z2.bin", build_merged(
        "esp32", app=build_image(segments=[]))), fake)
    assert "application image at flash 0x10000 has no segments" in err


def test_esptool_printf_style_error_is_formatted(fake, tmp_path, capsys):
    # byte 23 is the append_digest flag: esptool raises RuntimeError(fmt, value)
    data = bytearray(build_merged("esp32"))
    data[23] = 59
    err = wrong_file(capsys, write(tmp_path, "rnd.bin", bytes(data)), fake)
    assert "append_digest field (0x3b)" in err
    assert "%02x" not in err and "', 59)" not in err


@pytest.mark.parametrize("baud", ["300", "9600", "115199", "0", "-5", "6000000"])
def test_baud_outside_what_esptool_can_use_is_refused(fake, esp32_bin, capsys, baud):
    for extra in (["--dry-run"], ["--port", "/dev/ttyUSB0"]):
        rc, out, err = run_cli(capsys, *extra, "--baud", baud, esp32_bin)
        assert rc == 2, (out, err)
        assert "--baud %s cannot be used" % baud in err and "between 115200 and" in err
    assert fake.calls == []


# --------------------------------------------------------------------------- wrong files


def test_s3_image_mismatch_against_fake_esp32(fake, s3_bin, capsys):
    rc, _, err = run_cli(capsys, "--port", "/dev/ttyUSB0", s3_bin)
    assert rc == 2
    assert "ESP32-S3" in err and "is an ESP32." in err
    assert_nothing_written(fake)


def wrong_file(capsys, path, fake):
    rc, out, err = run_cli(capsys, "--port", "/dev/ttyUSB0", path)
    assert rc == 2, (out, err)
    assert fake.calls == [], "a wrong file must be refused before the port is opened"
    assert err.startswith("vmmaker-flash: error: ")
    assert "Traceback" not in err
    return err


def test_bad_magic(fake, tmp_path, capsys):
    data = bytearray(build_image())
    data[0] = 0xE8
    err = wrong_file(capsys, write(tmp_path, "bad.bin", bytes(data)), fake)
    assert "is not an ESP firmware image: it starts with byte 0xe8" in err
    assert "0xE9" in err


@pytest.mark.parametrize("cut", [4, 20, 40, 70])
def test_truncated_image(fake, tmp_path, capsys, cut):
    # cut inside the common header, the extended header, the first and the second segment
    data = build_image()[:cut]
    err = wrong_file(capsys, write(tmp_path, "short.bin", data), fake)
    assert "is not a valid ESP firmware image" in err
    assert "truncated or corrupted" in err


def test_truncated_before_checksum_and_digest(fake, tmp_path, capsys):
    data = build_image()[:-40]  # segments complete; checksum block and digest cut
    err = wrong_file(capsys, write(tmp_path, "short.bin", data), fake)
    assert "not a valid ESP firmware image" in err or "corrupted" in err


def test_bad_checksum(fake, tmp_path, capsys):
    data = bytearray(build_image(append_digest=False))
    data[-1] ^= 0xFF
    err = wrong_file(capsys, write(tmp_path, "badsum.bin", bytes(data)), fake)
    assert "is corrupted: its checksum byte" in err


def test_bad_segment_byte_breaks_checksum(fake, tmp_path, capsys):
    data = bytearray(build_image(append_digest=False))
    data[24 + 8 + 3] ^= 0x01  # a byte of the first segment's data
    err = wrong_file(capsys, write(tmp_path, "flip.bin", bytes(data)), fake)
    assert "is corrupted: its checksum byte" in err


def test_bad_digest(fake, tmp_path, capsys):
    data = bytearray(build_image(append_digest=True))
    data[-1] ^= 0xFF
    err = wrong_file(capsys, write(tmp_path, "baddigest.bin", bytes(data)), fake)
    assert "SHA-256 digest stored in the image does not match" in err


def test_empty_file(fake, tmp_path, capsys):
    err = wrong_file(capsys, write(tmp_path, "empty.bin", b""), fake)
    assert "is empty (0 bytes)" in err


def test_missing_file(fake, tmp_path, capsys):
    err = wrong_file(capsys, str(tmp_path / "nope.bin"), fake)
    assert "firmware file not found" in err and "micropython.org/download" in err


def test_directory_instead_of_file(fake, tmp_path, capsys):
    err = wrong_file(capsys, str(tmp_path), fake)
    assert "is a directory" in err


@pytest.mark.parametrize("content, hint", [
    (b"UF2\nWQ]\x9e" + b"\x00" * 504, "UF2 file"),
    (b"<!DOCTYPE html><html><body>Not Found</body></html>", "HTML page"),
    (b"\x7fELF\x01\x01\x01" + b"\x00" * 40, "ELF file"),
    (b":020000040000FA\n", "Intel HEX"),
    (b"PK\x03\x04" + b"\x00" * 40, "zip archive"),
])
def test_other_file_kinds_are_named(fake, tmp_path, capsys, content, hint):
    err = wrong_file(capsys, write(tmp_path, "fw.bin", content), fake)
    assert "is not an ESP firmware image" in err and hint in err


def test_application_only_image_is_refused(fake, tmp_path, capsys):
    # like MicroPython's firmware.app-bin: the first segment is mapped from flash (DROM)
    segs = [(0x3F400020, b"\x32\x54\xcd\xab" + b"\x00" * 28)] + ram_segments()
    err = wrong_file(capsys, write(tmp_path, "fw.app-bin", build_image(segments=segs)), fake)
    assert "application-only image" in err and "0x3f400020" in err
    assert "not the .app-bin" in err


def test_esp8266_image_is_unsupported(fake, tmp_path, capsys):
    path = write(tmp_path, "ESP8266_GENERIC.bin", build_esp8266_image())
    rc, out = image_info(path, chip="esp8266")
    assert rc == 0 and "(valid)" in out, out  # esptool agrees it is a good ESP8266 image
    err = wrong_file(capsys, path, fake)
    assert "is ESP8266 firmware" in err
    assert "ESP32, ESP32-S2, ESP32-S3, ESP32-C3, ESP32-C6, ESP32-H2" in err


def test_unknown_image_chip_id(fake, tmp_path, capsys):
    err = wrong_file(capsys, write(tmp_path, "x.bin", build_image(chip_id=200)), fake)
    assert "unknown chip (chip id 200" in err


def test_image_for_a_chip_without_micropython_support_here(fake, tmp_path, capsys):
    esp32c61 = CHIP_DEFS["esp32c61"]
    segs = [(start + 0x100, b"\x00" * 16) for start, _e, n in esp32c61.MEMORY_MAP
            if n in ("DRAM",)][:1]
    err = wrong_file(capsys, write(tmp_path, "c61.bin",
                                   build_image(chip_id=esp32c61.IMAGE_CHIP_ID, segments=segs)),
                     fake)
    assert "is firmware for an ESP32-C61" in err and "ESP32-S3" in err


def test_esptool_rejects_what_vmmaker_flash_calls_corrupt(tmp_path):
    # esptool's own image-info also flags the bad checksum of the image we refuse.
    data = bytearray(build_image(append_digest=False))
    data[-1] ^= 0xFF
    rc, out = image_info(write(tmp_path, "badsum.bin", bytes(data)), chip="esp32")
    assert "invalid - calculated" in out
