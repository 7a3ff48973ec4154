"""vmmaker-flash: put a MicroPython firmware .bin on an ESP32-family board.

A thin wrapper around esptool's public Python API (esptool >= 5: ``esptool.cmds``):
check the file with esptool's own image parser, detect the chip on the serial port, refuse a
firmware built for another chip, load the flasher stub, erase, write at the chip's offset,
verify by MD5, hard reset. ``--dry-run`` checks the file and prints the plan without opening
the port.

    vmmaker-flash --port /dev/ttyUSB0 ESP32_GENERIC-20250415-v1.25.0.bin

Exit codes: 0 done; 2 nothing was written (bad file, port, chip, mismatch, options: the
message says what to do); 1 esptool failed after connecting (the message says whether the
flash was touched); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from dataclasses import dataclass

try:  # pyserial comes with esptool
    import serial
    _SERIAL_ERRORS: tuple = (serial.SerialException, OSError)
except ImportError:  # pragma: no cover - esptool itself needs pyserial
    _SERIAL_ERRORS = (OSError,)

try:
    import esptool
    from esptool import bin_image, cmds, targets, util
except ImportError:  # pragma: no cover - esptool is a runtime dependency (pyproject)
    esptool = None

PROG = "vmmaker-flash"
ROM_BAUD = 115200  # every ESP ROM bootloader syncs at 115200; the stub then switches up
DEFAULT_BAUD = 460800
ESP_IMAGE_MAGIC = 0xE9
# --baud: the stub switches up from ROM_BAUD (esptool never switches down: its CLI and this tool
# only call change_baud for a faster rate); ESP32-family UARTs and the common USB-serial
# bridges top out at a few Mbaud.
MIN_BAUD = ROM_BAUD
MAX_BAUD = 5000000
# The rest of a merged MicroPython .bin, at these flash addresses (ESP-IDF's defaults, which
# MicroPython's partition tables use): the partition table at 0x8000 (each 32-byte entry starts
# with the magic bytes 0xAA 0x50) and the application ("factory" app partition) at 0x10000.
PARTITION_TABLE_ADDR = 0x8000
PARTITION_MAGIC = b"\xaa\x50"
APP_ADDR = 0x10000
DOWNLOAD_URL = "https://micropython.org/download/"

# Where the MicroPython firmware .bin goes in flash, per chip (esptool's chip key -> offset).
# The .bin is bootloader + partition table + application merged into one file, so it starts
# at the chip's second-stage-bootloader offset. Two sources, which agree for every row:
#  * MicroPython's published flashing instructions: ports/esp32/boards/deploy.md says
#    "esptool.py --baud 460800 write_flash {flash_offset} ESP32_BOARD_NAME-DATE-VERSION.bin"
#    with flash_offset from each board.json ("deploy_options": {"flash_offset": ...}):
#    ESP32_GENERIC 0x1000, ESP32_GENERIC_S3/C3/C6/H2/C2 0, ESP32_GENERIC_C5/P4 0x2000;
#    ESP32_GENERIC_S2 uses ports/esp32/boards/deploy_s2.md: "write_flash -z 0x1000".
#  * esptool's chip definitions: BOOTLOADER_FLASH_OFFSET in esptool/targets/*.py (esp32.py
#    0x1000, inherited by esp32s2.py; esp32s3.py and esp32c3.py 0x0, inherited by esp32c6.py,
#    esp32h2.py and esp32c2.py; esp32c5.py and esp32p4.py 0x2000).
# tests/test_flash.py checks this table against the installed esptool's definitions.
FLASH_OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32h2": 0x0,
    "esp32c2": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
}

# micropython.org board names of the generic firmware for each chip (for error messages).
GENERIC_BOARDS = {
    "esp32": "ESP32_GENERIC", "esp32s2": "ESP32_GENERIC_S2", "esp32s3": "ESP32_GENERIC_S3",
    "esp32c3": "ESP32_GENERIC_C3", "esp32c6": "ESP32_GENERIC_C6", "esp32h2": "ESP32_GENERIC_H2",
    "esp32c2": "ESP32_GENERIC_C2", "esp32c5": "ESP32_GENERIC_C5", "esp32p4": "ESP32_GENERIC_P4",
}

# Chips MicroPython runs on but that have no WiFi of their own: the VM Maker SDK needs a network.
NO_WIFI_NOTES = {
    "esp32h2": "the ESP32-H2 has no WiFi (BLE/802.15.4 only): the VM Maker SDK cannot reach "
               "its servers from this board",
    "esp32p4": "the ESP32-P4 has no WiFi of its own: the VM Maker SDK needs a board with a "
               "WiFi coprocessor and the matching firmware variant",
}


class FlashError(Exception):
    """An error for the user: the message says what is wrong and what to do."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def chip_key(name: str) -> str:
    """'ESP32-S3', 'esp32_s3', 'esp32s3' -> 'esp32s3' (esptool's CHIP_DEFS key)."""
    return name.strip().lower().replace("-", "").replace("_", "")


def chip_name(key: str) -> str:
    """Display name of an esptool chip key: 'esp32s3' -> 'ESP32-S3'."""
    cls = targets.CHIP_DEFS.get(key) if esptool is not None else None
    return cls.CHIP_NAME if cls is not None else key.upper()


def supported_list() -> str:
    return ", ".join(chip_name(k) for k in FLASH_OFFSETS)


def _unsupported_chip_message(what: str) -> str:
    return ("%s; vmmaker-flash puts MicroPython on these chips only: %s. For any other chip "
            "(ESP8266, ESP32-C61, ...) use esptool directly." % (what, supported_list()))


# --------------------------------------------------------------------------- the file


@dataclass
class Firmware:
    path: str
    data: bytes
    chip: str  # esptool chip key from the image's extended header (e.g. "esp32")
    chip_id: int
    entrypoint: int
    segments: list  # [(load address, length)]
    digest: str  # "valid" / "not appended"
    app_addr: int = APP_ADDR  # flash address of the application image in the merged file
    app_segments: int = 0

    @property
    def size(self) -> int:
        return len(self.data)


def _file_kind_hint(data: bytes) -> str:
    if data.startswith(b"UF2\n"):
        return (" It is a UF2 file (for a UF2 bootloader's USB drive), not the firmware .bin.")
    if data.startswith(b"\x7fELF"):
        return " It is an ELF file (a build artefact), not the firmware .bin."
    if data.startswith(b"PK\x03\x04"):
        return " It is a zip archive: unpack it and pass the .bin inside."
    if data[:1] == b":":
        return " It looks like an Intel HEX file, not the firmware .bin."
    head = data[:512].lstrip().lower()
    if head.startswith(b"<!doctype html") or head.startswith(b"<html"):
        return " It is an HTML page: the download saved a web page instead of the file."
    return ""


def _exc_text(e: BaseException) -> str:
    """An exception's message; esptool raises some with printf-style args, e.g.
    RuntimeError('Invalid value for append_digest field (0x%02x). ...', 59)."""
    args = getattr(e, "args", ())
    if len(args) > 1 and isinstance(args[0], str) and "%" in args[0]:
        try:
            return (args[0] % tuple(args[1:])).strip()
        except (TypeError, ValueError):
            pass
    return str(e).strip()


def _is_esp8266_image(data: bytes) -> bool:
    """True if esptool parses data as an ESP8266 (version 1) image with a valid checksum.
    ESP8266 images have the same magic byte but no extended header (so no chip id)."""
    try:
        # esptool warns about "suspicious" segments while parsing; this is only a probe
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            image = bin_image.LoadFirmwareImage("esp8266", data)
    except Exception:
        return False
    return getattr(image, "checksum", None) == image.calculate_checksum()


def inspect_firmware(path: str) -> Firmware:
    """Read and check a firmware .bin with esptool's own image parser; FlashError if unusable."""
    get = "Download the firmware .bin for your board from %s (e.g. ESP32_GENERIC for an ESP32)" \
        % DOWNLOAD_URL
    if not os.path.exists(path):
        raise FlashError("firmware file not found: %s. %s and pass its path." % (path, get))
    if os.path.isdir(path):
        raise FlashError("%s is a directory; pass the firmware .bin file itself." % path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FlashError("cannot read firmware file %s: %s. Check its permissions."
                         % (path, e.strerror or e))
    if not data:
        raise FlashError("firmware file %s is empty (0 bytes): the download or copy failed. %s."
                         % (path, get))
    if data[0] != ESP_IMAGE_MAGIC:
        raise FlashError(
            "%s is not an ESP firmware image: it starts with byte 0x%02x, an ESP image starts "
            "with 0x%02X.%s %s." % (path, data[0], ESP_IMAGE_MAGIC, _file_kind_hint(data), get))

    # The common header (8 bytes) is the same for every ESP32-family chip and the 16-byte
    # extended header holds the chip id; parse once generically to learn the chip, then again
    # with that chip's class (its memory map) for the checks below.
    def load(key):
        try:
            return bin_image.LoadFirmwareImage(key, data)
        except Exception as e:  # FatalError, struct.error, TypeError... on a short/odd file
            raise FlashError(
                "%s is not a valid ESP firmware image (esptool: %s: %s); it is probably "
                "truncated or corrupted. %s." % (path, type(e).__name__, _exc_text(e), get))

    def esp8266_check():
        if _is_esp8266_image(data):
            raise FlashError(_unsupported_chip_message("%s is ESP8266 firmware" % path))

    try:
        image = load("esp32")
    except FlashError:
        esp8266_check()
        raise
    chip = next((k for k, cls in targets.CHIP_DEFS.items()
                 if getattr(cls, "IMAGE_CHIP_ID", None) == image.chip_id), None)
    if chip is None:
        esp8266_check()
        raise FlashError(_unsupported_chip_message(
            "%s is an ESP image for an unknown chip (chip id %d in its header)"
            % (path, image.chip_id)))
    image = load(chip)

    if image.checksum != image.calculate_checksum():
        esp8266_check()
        raise FlashError(
            "%s is corrupted: its checksum byte is 0x%02x but its segments give 0x%02x. "
            "%s again." % (path, image.checksum, image.calculate_checksum(), get))
    digest = "not appended"
    if getattr(image, "append_digest", False):
        if image.stored_digest != image.calc_digest:
            raise FlashError("%s is corrupted: the SHA-256 digest stored in the image does not "
                             "match its contents. %s again." % (path, get))
        digest = "valid"
    if chip not in FLASH_OFFSETS:
        raise FlashError(_unsupported_chip_message(
            "%s is firmware for an %s" % (path, chip_name(chip))))

    # A full MicroPython .bin starts with the second-stage bootloader, which the ROM loads into
    # RAM. An image with segments mapped from flash (IROM/DROM) is an application: the
    # firmware.app-bin published next to the .bin (it goes at 0x10000, not at the bootloader
    # offset, and a board with only that at the bootloader offset does not boot).
    flash_mapped = [s.addr for s in image.segments if image.is_flash_addr(s.addr)]
    if flash_mapped:
        raise FlashError(
            "%s is an application-only image (a segment is mapped from flash at 0x%08x), not "
            "the full MicroPython firmware .bin that starts with the bootloader: it would not "
            "boot at offset 0x%x. Download the .bin file for %s (not the .app-bin) from %s."
            % (path, flash_mapped[0], FLASH_OFFSETS[chip], GENERIC_BOARDS[chip], DOWNLOAD_URL))

    if not image.segments:
        raise FlashError("%s is not usable firmware: its image has no segments (nothing for the "
                         "ROM to load). %s again." % (path, get))

    app_addr, app = _check_rest_of_merged_image(path, data, chip, get)
    return Firmware(path=path, data=data, chip=chip, chip_id=image.chip_id,
                    entrypoint=image.entrypoint,
                    segments=[(s.addr, len(s.data)) for s in image.segments], digest=digest,
                    app_addr=app_addr, app_segments=len(app.segments))


def _check_rest_of_merged_image(path: str, data: bytes, chip: str, get: str):
    """The MicroPython .bin goes at the bootloader offset and must also hold the partition table
    and the application: a file that ends earlier (a cut-off download, a bootloader-only build
    artefact) would leave a board that does not boot. Returns (app flash address, app image)."""
    base = FLASH_OFFSETS[chip]
    pt = PARTITION_TABLE_ADDR - base
    truncated = ("%s is %d bytes: it ends before the %%s (flash 0x%%x, file offset 0x%%x), so it "
                 "is not a complete MicroPython firmware .bin (truncated download? the file "
                 "ends before the application). %s again." % (path, len(data), get))
    if len(data) < pt + 32:
        raise FlashError(truncated % ("partition table", PARTITION_TABLE_ADDR, pt))
    if data[pt:pt + 2] != PARTITION_MAGIC:
        raise FlashError(
            "%s has no partition table at flash 0x%x (file offset 0x%x: bytes %s, expected "
            "aa 50): it is not a complete MicroPython firmware .bin for offset 0x%x. %s again."
            % (path, PARTITION_TABLE_ADDR, pt, data[pt:pt + 2].hex(" "), base, get))
    app_addr = APP_ADDR
    app_off = app_addr - base
    if len(data) <= app_off:
        raise FlashError(truncated % ("application", app_addr, app_off))
    if data[app_off] != ESP_IMAGE_MAGIC:
        raise FlashError(
            "%s has no application image at flash 0x%x (file offset 0x%x starts with byte "
            "0x%02x, an ESP image starts with 0x%02X): it is not a complete MicroPython "
            "firmware .bin (truncated download? the file ends before the application). %s "
            "again." % (path, app_addr, app_off, data[app_off], ESP_IMAGE_MAGIC, get))
    try:
        # esptool warns on stdout about segments it finds unusual; this is a check only
        with contextlib.redirect_stdout(io.StringIO()):
            app = bin_image.LoadFirmwareImage(chip, data[app_off:])
    except Exception as e:
        raise FlashError(
            "%s: the application image at flash 0x%x (file offset 0x%x) is cut off or "
            "corrupted (esptool: %s: %s): truncated download? the file ends before the "
            "application is complete. %s again."
            % (path, app_addr, app_off, type(e).__name__, _exc_text(e), get))
    what = "%s: the application image at flash 0x%x" % (path, app_addr)
    if getattr(app, "chip_id", None) != targets.CHIP_DEFS[chip].IMAGE_CHIP_ID:
        raise FlashError("%s is for chip id %s, the bootloader for %s: the file is corrupted or "
                         "put together wrongly. %s." % (what, getattr(app, "chip_id", "?"),
                                                       chip_name(chip), get))
    if not app.segments:
        raise FlashError("%s has no segments. %s again." % (what, get))
    if app.checksum != app.calculate_checksum():
        raise FlashError("%s is corrupted: its checksum byte is 0x%02x but its segments give "
                         "0x%02x. %s again." % (what, app.checksum, app.calculate_checksum(), get))
    if getattr(app, "append_digest", False) and app.stored_digest != app.calc_digest:
        raise FlashError("%s is corrupted: its SHA-256 digest does not match its contents. "
                         "%s again." % (what, get))
    return app_addr, app


def mismatch_message(fw: Firmware, board_chip: str, where: str) -> str:
    return ("%s is MicroPython firmware for %s (chip id %d in its header), but %s is an %s. "
            "Download the %s firmware (%s) from %s, or connect the %s board."
            % (fw.path, chip_name(fw.chip), fw.chip_id, where, chip_name(board_chip),
               chip_name(board_chip), GENERIC_BOARDS[board_chip], DOWNLOAD_URL,
               chip_name(fw.chip)))


# --------------------------------------------------------------------------- the plan


def plan_steps(fw: Firmware, chip: str, port: str, baud: int, erase: bool,
               expect: str | None) -> list:
    offset = FLASH_OFFSETS[chip]
    detect = "detect the chip (must be %s)" % chip_name(expect or chip)
    steps = [
        "open %s at %d baud, reset the board into its ROM bootloader and %s"
        % (port or "PORT", ROM_BAUD, detect),
        "load esptool's flasher stub and switch to %d baud" % baud,
        ("erase the whole flash (MicroPython's filesystem too)" if erase else
         "no full erase (--no-erase): only the sectors written are erased, the rest of the "
         "flash (the filesystem) is kept"),
        "write %s (%d bytes) at offset 0x%x" % (os.path.basename(fw.path), fw.size, offset),
        "verify: compare the flash's MD5 over 0x%x..0x%x with the file's" % (
            offset, offset + fw.size),
        "hard reset (the board boots MicroPython)",
    ]
    return steps


def print_plan(fw: Firmware, chip: str, chip_source: str, args) -> None:
    offset = FLASH_OFFSETS[chip]
    out = sys.stdout
    out.write("%s plan (dry run: the serial port is not opened)\n" % PROG)
    out.write("  firmware: %s\n" % fw.path)
    out.write("  size:     %d bytes\n" % fw.size)
    out.write("  image:    %s image (chip id %d), entry 0x%08x, %d segments, checksum valid, "
              "SHA-256 %s\n" % (chip_name(fw.chip), fw.chip_id, fw.entrypoint,
                                len(fw.segments), fw.digest))
    out.write("  app:      application image at 0x%x, %d segments, checksum valid; partition "
              "table at 0x%x\n" % (fw.app_addr, fw.app_segments, PARTITION_TABLE_ADDR))
    out.write("  chip:     %s (%s)\n" % (chip_name(chip), chip_source))
    out.write("  offset:   0x%x\n" % offset)
    out.write("  port:     %s\n" % (args.port or "(none given: --port is needed for a real run)"))
    out.write("  baud:     %d\n" % args.baud)
    if chip in NO_WIFI_NOTES:
        out.write("  note:     %s\n" % NO_WIFI_NOTES[chip])
    out.write("  steps:\n")
    for i, step in enumerate(plan_steps(fw, chip, args.port, args.baud, not args.no_erase,
                                        args.chip if args.chip != "auto" else None), 1):
        out.write("    %d. %s\n" % (i, step))


# --------------------------------------------------------------------------- the board


def _connect(port: str):
    """cmds.detect_chip with its errors turned into FlashErrors that say what to do."""
    try:
        return cmds.detect_chip(port, ROM_BAUD)
    except _SERIAL_ERRORS as e:
        raise FlashError(_port_message(port, str(e)))
    except util.FatalError as e:
        msg = str(e).strip()
        if msg.startswith("Could not open"):
            # esptool wraps the pyserial error: "Could not open PORT, the port is busy or
            # doesn't exist.\n(<pyserial error>)\nHint: ..."
            detail = msg.split("\n")[1].strip(" ()") if "\n" in msg else msg
            raise FlashError(_port_message(port, detail))
        if "autodetect chip type" in msg:
            raise FlashError(_unsupported_chip_message(
                "the chip on %s is not one this esptool (%s) recognises (%s)"
                % (port, esptool.__version__, msg.split("\n")[0])))
        if "Failed to connect" in msg:
            raise FlashError(
                "no ESP bootloader answered on %s (esptool: %s). Put the board in download "
                "mode: hold BOOT (IO0), press and release RESET (EN), release BOOT, then run "
                "again; check that the USB cable carries data and that nothing else (a serial "
                "monitor, mpremote) uses the port." % (port, msg.split("\n")[0]))
        raise FlashError("could not talk to the board on %s: %s" % (port, msg))


def _port_message(port: str, detail: str) -> str:
    return ("cannot open serial port %s (%s). Check the --port name (list the ports with "
            "`.venv/bin/python -m serial.tools.list_ports`), that the board is plugged in, and that no "
            "other program (a serial monitor, mpremote) holds the port; on Linux, a "
            "'Permission denied' means adding yourself to the dialout (or uucp) group."
            % (port, detail))


def _reset_quietly(esp) -> None:
    try:
        cmds.reset_chip(esp, "hard-reset")
    except Exception:
        pass


def flash(fw: Firmware, args) -> int:
    port = args.port
    expect = None if args.chip == "auto" else args.chip
    rom = _connect(port)
    with rom:  # ESPLoader's context manager closes the serial port on every path
        esp = rom
        board = chip_key(esp.CHIP_NAME)
        ok = False
        try:
            if board not in FLASH_OFFSETS:
                raise FlashError(_unsupported_chip_message(
                    "the board on %s is an %s" % (port, esp.CHIP_NAME)))
            if expect and board != expect:
                raise FlashError("the board on %s is an %s, but --chip %s was given: drop "
                                 "--chip (auto-detect) or connect the %s board."
                                 % (port, chip_name(board), expect, chip_name(expect)))
            if fw.chip != board:
                raise FlashError(mismatch_message(fw, board, "the board on %s" % port))
            if getattr(esp, "secure_download_mode", False):
                raise FlashError(
                    "the %s on %s is in Secure Download Mode: its ROM cannot erase the whole "
                    "flash or report an MD5 for verification, so vmmaker-flash stops here. "
                    "Use esptool directly (esptool write-flash) for such a board."
                    % (esp.CHIP_NAME, port))
            offset = FLASH_OFFSETS[board]
            print("%s: %s on %s; writing %s (%d bytes) at 0x%x"
                  % (PROG, esp.CHIP_NAME, port, fw.path, fw.size, offset))
            if board in NO_WIFI_NOTES:
                print("%s: note: %s" % (PROG, NO_WIFI_NOTES[board]))

            step = "loading the flasher stub"
            try:
                esp = cmds.run_stub(esp)
                if args.baud > ROM_BAUD:
                    step = "switching to %d baud" % args.baud
                    try:
                        esp.change_baud(args.baud)
                    except util.NotImplementedInROMError:
                        print("%s: this ROM cannot change baud rate; staying at %d"
                              % (PROG, ROM_BAUD))
                step = "attaching the SPI flash"
                cmds.attach_flash(esp)
                step = "reading the flash size"
                size_name = cmds.detect_flash_size(esp)
                size = util.flash_size_bytes(size_name) if size_name else None
                if size is not None and offset + fw.size > size:
                    raise FlashError(
                        "%s (%d bytes at 0x%x) does not fit in this board's %s flash: download "
                        "the firmware variant for your flash size." % (fw.path, fw.size, offset,
                                                                      size_name))
                # erase_all makes esptool run its own safety checks (flash encryption, secure
                # boot, chip revision the image needs, size) first, then erase the whole chip,
                # then write; it checks the written region's MD5 itself before returning.
                step = "writing" if args.no_erase else "erasing and writing"
                cmds.write_flash(esp, [(offset, fw.data)], erase_all=not args.no_erase)
                step = "verifying"
                cmds.verify_flash(esp, [(offset, fw.data)])
            except FlashError:
                raise
            except (util.FatalError, *_SERIAL_ERRORS) as e:
                touched = step in ("erasing and writing", "writing", "verifying")
                raise FlashError(
                    "flashing failed while %s: %s. %s" % (
                        step, str(e).strip() or type(e).__name__,
                        "If esptool got as far as erasing or writing, the board has no "
                        "working firmware now: fix the cause and run vmmaker-flash again (with "
                        "--baud 115200 if the link is unreliable)." if touched else
                        "Nothing was written; the board keeps its old firmware."),
                    exit_code=1)
            ok = True
        finally:
            if not ok:
                _reset_quietly(esp)  # leave the board running, as esptool's CLI does
        try:
            cmds.reset_chip(esp, "hard-reset")
            reset = "the board was reset"
        except (util.FatalError, *_SERIAL_ERRORS) as e:
            print("%s: firmware written and verified, but the hard reset failed (%s): press "
                  "the board's RESET (EN) button." % (PROG, e), file=sys.stderr)
            reset = "press RESET to boot it"
    print("%s: done: MicroPython written at 0x%x and verified; %s." % (PROG, offset, reset))
    return 0


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Flash a MicroPython firmware .bin onto an ESP32-family board: detect the "
                    "chip, erase, write at the chip's offset, verify, hard reset. "
                    "Supported chips: %s." % ", ".join(FLASH_OFFSETS),
        epilog="Offsets: " + ", ".join("%s 0x%x" % (k, v) for k, v in FLASH_OFFSETS.items())
               + " (MicroPython's flashing instructions; esptool's chip definitions).")
    ap.add_argument("firmware", metavar="FIRMWARE.bin",
                    help="MicroPython firmware .bin from %s" % DOWNLOAD_URL)
    ap.add_argument("--port", "-p", help="serial port of the board, e.g. /dev/ttyUSB0, "
                    "/dev/ttyACM0, /dev/cu.usbserial-0001, COM3")
    ap.add_argument("--baud", "-b", type=int, default=DEFAULT_BAUD,
                    help="baud rate for erasing/writing once the stub runs (default %d; try "
                         "115200 if writing fails part-way)" % DEFAULT_BAUD)
    ap.add_argument("--no-erase", action="store_true",
                    help="do not erase the whole flash first (keeps MicroPython's filesystem, "
                         "e.g. vmmaker.json, when upgrading)")
    ap.add_argument("--chip", "-c", default="auto",
                    help="auto (default: detect) or the chip the board must be: %s"
                         % ", ".join(FLASH_OFFSETS))
    ap.add_argument("--dry-run", action="store_true",
                    help="check the file and print the plan (chip, offset, size, steps) "
                         "without opening the port")
    return ap


def _esptool_problem() -> str | None:
    if esptool is None:
        return "esptool is not installed: pip install 'esptool>=5,<6'"
    needed = ("detect_chip", "run_stub", "attach_flash", "detect_flash_size", "write_flash",
              "verify_flash", "reset_chip")
    missing = [n for n in needed if not hasattr(cmds, n)]
    if missing or not hasattr(bin_image, "LoadFirmwareImage"):
        return ("vmmaker-flash needs esptool 5's Python API (esptool %s is installed, without "
                "esptool.cmds.%s): pip install 'esptool>=5,<6'"
                % (getattr(esptool, "__version__", "?"), ", ".join(missing) or "?"))
    return None


def run(args) -> int:
    problem = _esptool_problem()
    if problem:
        raise FlashError(problem)
    if not MIN_BAUD <= args.baud <= MAX_BAUD:
        raise FlashError(
            "--baud %d cannot be used: the board's ROM bootloader talks at %d baud and the "
            "flasher stub can only switch up from there, so --baud must be between %d and %d "
            "(e.g. 460800, the default, or 115200 if writing fails part-way; 921600 on a good "
            "cable)." % (args.baud, ROM_BAUD, MIN_BAUD, MAX_BAUD))
    if args.chip != "auto":
        key = chip_key(args.chip)
        if key not in FLASH_OFFSETS:
            raise FlashError(_unsupported_chip_message("--chip %s is not supported" % args.chip))
        args.chip = key
    fw = inspect_firmware(args.firmware)
    if args.chip != "auto" and args.chip != fw.chip:
        raise FlashError(mismatch_message(fw, args.chip, "--chip says the board"))
    if args.dry_run:
        source = ("--chip, and the firmware header agrees" if args.chip != "auto" else
                  "from the firmware header; a real run detects the board's chip and stops if "
                  "it differs")
        print_plan(fw, fw.chip, source, args)
        return 0
    if not args.port:
        raise FlashError("--port is required, e.g. --port /dev/ttyUSB0 (list the ports with "
                         "`.venv/bin/python -m serial.tools.list_ports`); --dry-run works without it.")
    return flash(fw, args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except FlashError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("%s: interrupted" % PROG, file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
